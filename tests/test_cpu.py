import ctypes
import subprocess
import sys

import pytest

try:
    ctypes.CDLL(None).gnu_get_libc_version
    GLIBC = True
except AttributeError:
    GLIBC = False

ASK = "from cellscreen.cpu import keep_freed_memory; print(keep_freed_memory(), keep_freed_memory())"


def _ask(env_value: str | None, monkeypatch) -> str:
    if env_value is None:
        monkeypatch.delenv("CELLSCREEN_KEEP_FREED_MEMORY", raising=False)
    else:
        monkeypatch.setenv("CELLSCREEN_KEEP_FREED_MEMORY", env_value)
    return subprocess.run([sys.executable, "-c", ASK], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc settings")
def test_freed_memory_is_kept_unless_asked_not_to(monkeypatch):
    assert _ask(None, monkeypatch) == "True True"
    assert _ask("0", monkeypatch) == "False False"
    assert _ask("off", monkeypatch) == "False False"


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc settings")
def test_kept_memory_spares_the_kernel_its_page_faults():
    # a small CNN's training step frees feature maps of a few MiB; as glibc comes, some go back to the
    # system and are faulted in again on the next step
    probe = ("import resource, sys, torch\n"
             "from torch import nn\n"
             "from cellscreen.cpu import keep_freed_memory\n"
             "if sys.argv[1] == '1': keep_freed_memory()\n"
             "torch.set_num_threads(1)\n"
             "net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(16, 8, 3, padding=1))\n"
             "x = torch.rand(8, 3, 96, 96)\n"
             "step = lambda: net(x).square().mean().backward()\n"
             "for _ in range(10): step()\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
             "for _ in range(40): step()\n"
             "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    faults = {}
    for kept in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", probe, kept], capture_output=True, text=True, check=True)
        faults[kept] = int(out.stdout.split()[-1])
    # measured over 30 steps, one thread: 50,700-102,000 page faults without in six runs (they come in
    # bursts, 0-3,400 a step, so only the total is compared), 0-2 with
    assert faults["0"] > 40 * 25, faults
    assert faults["1"] * 10 < faults["0"], faults


DENORMALS = ("import sys, torch\n"
             "from cellscreen.cpu import tune_process\n"
             "print(tune_process()['flush_denormals'])\n"
             "torch.set_num_threads(2)\n"
             "tiny = torch.full((1 << 20,), 1e-30) * 1e-10  # 1e-40: a denormal float32; split over both threads\n"
             "print(int((tiny != 0).sum()))\n")


@pytest.mark.parametrize("flush", ["1", "0"])
def test_denormals_are_flushed_in_every_thread_unless_asked_not_to(flush, monkeypatch):
    monkeypatch.setenv("CELLSCREEN_FLUSH_DENORMALS", flush)
    out = subprocess.run([sys.executable, "-c", DENORMALS], capture_output=True, text=True, check=True).stdout.split()
    if flush == "1":
        assert out == ["True", "0"]  # every value flushed, in PyTorch's worker thread as well
    else:
        assert out == ["False", str(1 << 20)]


def test_denormals_are_flushed_inside_the_block_and_the_callers_setting_comes_back(monkeypatch):
    from cellscreen.cpu import denormals_flushed, flushing_denormals

    monkeypatch.delenv("CELLSCREEN_FLUSH_DENORMALS", raising=False)
    assert not flushing_denormals()
    with denormals_flushed() as flushed:
        assert flushed and flushing_denormals()
    assert not flushing_denormals()


def test_training_gives_the_caller_its_denormals_back(trained_run):
    # trained in this process: left flushed, later code would lose its denormals (hypothesis refuses to run)
    from cellscreen.cpu import flushing_denormals

    assert trained_run.run.is_dir()
    assert not flushing_denormals()
