"""Model registry: ``create_model(name, num_classes=...)`` and ``list_models()``."""

from cellscreen.models import compact, lenet, seed_cnns, zoo  # noqa: F401  (importing registers the models)
from cellscreen.models._registry import (
    DataConfig,
    count_flops,
    create_model,
    get_data_config,
    list_models,
    load_pretrained,
    model_summary,
)

__all__ = ["DataConfig", "count_flops", "create_model", "get_data_config", "list_models", "load_pretrained", "model_summary"]
