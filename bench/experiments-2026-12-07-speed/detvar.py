"""screen_detection.py --part tuning --skip big with detect's constants overridden: detvar.py NAME=VALUE ..."""
import sys
sys.path.insert(0, "/work/main/bench")
from cellscreen.screen import detect
for item in sys.argv[1:]:
    name, value = item.split("=")
    setattr(detect, name, float(value) if "." in value else int(value))
    print("set", name, value)
sys.argv = ["screen_detection.py", "--part", "tuning", "--skip", "big"]
import screen_detection
screen_detection.main()
