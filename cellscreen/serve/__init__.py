"""Using a trained model: batch prediction (and later export and serving)."""
