"""What several commands share: the help layout, the common options and the step from options to a dataset.

Every command is made with ``add_command``, so its ``--help`` shows the
command's purpose, its options in named groups with their defaults, and ends
with a few commands to copy.
"""

from __future__ import annotations

import argparse
import ipaddress
import textwrap
from pathlib import Path

__all__ = ["HelpFormatter", "add_command", "common_options", "dataset_options", "interpolation_option",
           "precision_option", "relabel_option", "scan_index", "train_config", "data_folder", "print_metrics",
           "list_presets_text"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Examples kept as written, and ``(default: X)`` after an option whose help does not already say its
    default (options that default to nothing or to off say nothing)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS):
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text
        return f"{text} (default: %(default)s)"


def add_command(commands, name: str, *, help: str, examples: list[str], description: str | None = None
                ) -> argparse.ArgumentParser:
    """A sub-command whose ``--help`` opens with what it does and ends with ``examples`` (command lines,
    each optionally followed by ``# what it does``)."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    description = textwrap.fill(description or help[:1].upper() + help[1:] + ".", width=79)
    return commands.add_parser(name, help=help, description=description, epilog=epilog,
                               formatter_class=HelpFormatter)


def common_options(group) -> None:
    """--data and --quiet, which almost every command takes."""
    group.add_argument("--data", metavar="ROOT", help="data root holding the known datasets (default: "
                       "$CELLSCREEN_DATA, else ~/.cache/cellscreen/data); a folder of your own is DIR")
    group.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def interpolation_option(group) -> None:
    from cellscreen.data.images import DEFAULT_INTERPOLATION, INTERPOLATIONS  # numpy and PIL only, no PyTorch

    group.add_argument("--interpolation", choices=list(INTERPOLATIONS), default=DEFAULT_INTERPOLATION,
                       help="how images are shrunk: the resize new models train on (default: %(default)s) or the "
                       "exact bicubic of checkpoints from before it")


def dataset_options(group) -> None:
    """The dataset folder and how to read it: DIR, --dataset, --group-regex, --positive, --workers."""
    group.add_argument("dir", nargs="?", metavar="DIR", help="dataset folder (default: found under the data root)")
    group.add_argument("--dataset", "-d", default=None,
                       help="dataset profile (see `cellscreen datasets`; default: folder, or the checkpoint's)")
    group.add_argument("--group-regex", metavar="REGEX",
                       help="read the patient/slide id from file names with this pattern, e.g. '^(P\\d+)_' "
                       "(given once: a split manifest and a checkpoint remember it)")
    group.add_argument("--positive", metavar="CLASS", help="the positive class (the finding, e.g. infected) of "
                       "your own two-class folder (given once: a split manifest and a checkpoint remember it)")
    group.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core)")
    relabel_option(group)


def relabel_option(group) -> None:
    """--relabel FILE, repeatable: corrections to the dataset's labels, applied wherever it is read."""
    group.add_argument("--relabel", action="append", metavar="FILE",
                       help="a relabel file (CSV path,label; a label may be 'exclude') whose labels replace the "
                       "folder's; repeatable, the later wins; recorded with its SHA-256 in manifests, runs and "
                       "reports (the data folder is never changed)")


def precision_option(group, more: str = "") -> None:
    group.add_argument("--precision", choices=("32", "bf16"), default="32",
                       help="what a model run in PyTorch computes in: 32 (fp32), or bf16 (bf16 autocast: about "
                       "twice as fast on a CPU with bf16 units such as AMX, slower on one without; the class of "
                       "a few cells in ten thousand may differ)" + more)


def list_presets_text() -> str:
    """The bundled presets, for the help of --preset."""
    from cellscreen.config import list_presets  # PyYAML only

    return ", ".join(list_presets())


def scan_index(args):
    """The dataset index that DIR, --dataset, --group-regex, --positive, --data and --workers point at, with
    the --relabel files applied (``index.relabels`` records them)."""
    from cellscreen.data.index import scan_dataset  # keeps start-up fast
    from cellscreen.data.sources import get_profile, resolve_dataset_dir
    from cellscreen.labels.applied import relabel_index

    profile = get_profile(args.dataset or "folder", group_regex=args.group_regex, positive_class=args.positive)
    root = resolve_dataset_dir(profile, args.dir, data=args.data)
    index = scan_dataset(root, profile, workers=args.workers, progress=not args.quiet)
    return relabel_index(index, getattr(args, "relabel", None) or [])[0]


def train_config(args):
    """The training settings: the preset, then the options given, then every --set."""
    from cellscreen.config import load_config  # keeps start-up fast

    names = ("dataset", "model", "epochs", "batch_size", "lr", "optimizer", "split", "fold", "seed", "input_size",
             "group_regex", "pretrained", "init_from", "trainable", "new_head", "freeze_bn", "operating_point",
             "decision_threshold")
    # flags a command does not have, and switches left off, leave the preset's value
    flags = {name: getattr(args, name, None) for name in names}
    flags = {name: None if value is False else value for name, value in flags.items()}
    flags["positive_class"] = getattr(args, "positive", None)
    flags["relabel"] = getattr(args, "relabel", None)
    flags.update(_dataset_flags(args, flags))
    return load_config(getattr(args, "preset", None), flags, args.set or [])


def _dataset_flags(args, flags: dict) -> dict:
    """The dataset, group pattern, positive class and relabel files: as given, else as the split manifest
    recorded them (contradictions refused), else the ``folder`` profile for a DIR given without --dataset, as
    ``data info`` and ``split`` read it."""
    if flags.get("split"):
        from cellscreen.data.splits import manifest_settings, settle_setting  # keeps start-up fast
        from cellscreen.labels.applied import settle_relabels

        recorded = manifest_settings(flags["split"])
        settled = {name: settle_setting(name, flags.get(name), recorded[name], flags["split"])
                   for name in ("dataset", "group_regex", "positive_class")}
        relabel = settle_relabels(flags.get("relabel"), recorded.get("relabels"), flags["split"])
        return {**settled, "relabel": relabel or None}
    if getattr(args, "dir", None) and not flags.get("dataset"):
        return {"dataset": "folder"}
    return {}


def data_folder(args) -> str | None:
    """Where the dataset is: DIR, else --data, else the folder the split manifest was made from (if it is
    still there), else None (the data root)."""
    if getattr(args, "dir", None) or getattr(args, "data", None) or not getattr(args, "split", None):
        return getattr(args, "dir", None) or getattr(args, "data", None)
    from cellscreen.data.splits import manifest_settings  # keeps start-up fast

    root = manifest_settings(args.split)["root"]
    return root if root and Path(root).is_dir() else None


def print_metrics(result: dict) -> None:
    """The headline metrics of an evaluation, with their 95% intervals where there are some."""
    m, ci = result["metrics"], result.get("intervals", {})
    default = result.get("metrics_at_default_threshold")
    given = result.get("given_labels")  # the same predictions against the folder's own labels, beside
    if given:
        from cellscreen.labels.applied import describe_relabels  # keeps start-up fast

        print(f"  labels: {describe_relabels(result.get('relabels'))}")
    if default:
        print(f"  at the model's decision threshold {result['decision_threshold']:.4f} (at 0.5 in brackets):")
    if given:
        print(f"  {'':<18}{'relabelled':<36}folder's labels ({given['cells_relabelled']:,} cell(s) differ)")
    for name in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1", "mcc", "roc_auc"):
        interval = f"  (95% CI {ci[name][0]:.4f}-{ci[name][1]:.4f})" if name in ci else ""
        at_default = f"  [{default[name]:.4f}]" if default and name != "roc_auc" else ""
        line = f"{m[name]:.4f}{interval}{at_default}"
        if given:
            other = given.get("intervals", {})
            beside = f"  (95% CI {other[name][0]:.4f}-{other[name][1]:.4f})" if name in other else ""
            line = f"{line:<36}{given['metrics'][name]:.4f}{beside}"
        print(f"  {name:<18}{line}")
    for warning in result.get("warnings", []):
        print(f"  warning: {warning}")


def is_loopback(host: str) -> bool:
    """Whether a server bound to ``host`` is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False
