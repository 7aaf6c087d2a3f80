"""llama.cpp's own `llama-server`, as a peer for benchmarks.

It is built from the llama.cpp that llama-cpp-python vendors, at the installed llama-cpp-python's version, so
both sides run the same kernels; and built portably, as scripts/setup.sh builds the engine. The binary is kept
in ~/.cache/azurine/llama-server/<version>/ (beside the models; $XDG_CACHE_HOME is honoured), so building
twice does no work twice; an interrupted build resumes from its build tree there.

    .venv/bin/python benchmarks/llama_server.py    # build now (about 15 minutes on two cores), print the path
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import free_port, stop

PACKAGE = "llama-cpp-python"
# scripts/setup.sh's portable flags (the native build crashes on CPUs with AMX), a static binary so that the
# build tree can go, and nothing that reaches the network at configure or build time (no web UI, no TLS)
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_BMI2=ON",
    "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON",
)
JOBS = 2
STEP = re.compile(r"^\[\s*(\d+)(?:/(\d+)\]|%\])")  # ninja's "[12/140]" or make's "[ 8%]"


class LlamaServerError(RuntimeError):
    pass


def version() -> str:
    return importlib.metadata.version(PACKAGE)


def cache_dir() -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "azurine" / "llama-server" / version()


def _run(command: list[str], log: Path, what: str) -> None:
    with log.open("ab") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise LlamaServerError(f"{what} failed ({result.returncode}); the end of {log}:\n{tail}")


def _sources(work: Path, console: Console) -> Path:
    """llama.cpp from the sdist, unpacked once under `work`."""
    unpacked = work / f"llama_cpp_python-{version()}"
    source = unpacked / "vendor" / "llama.cpp"
    if (work / ".unpacked").exists():
        return source
    archives = list(work.glob("*.tar.gz"))
    if not archives:
        with console.status(f"downloading the {PACKAGE} {version()} sdist"):
            _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                  "--dest", str(work), f"{PACKAGE}=={version()}"], work / "download.log", "pip download")
        archives = list(work.glob("*.tar.gz"))
    with console.status(f"unpacking {archives[0].name}"):
        shutil.rmtree(unpacked, ignore_errors=True)
        with tarfile.open(archives[0]) as archive:
            archive.extractall(work, filter="data")
    (work / ".unpacked").touch()
    return source


def _build(source: Path, build: Path, log: Path, console: Console) -> Path:
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    with console.status("configuring llama.cpp"):
        _run(["cmake", "-S", str(source), "-B", str(build), *generator, *CMAKE_FLAGS], log, "cmake configure")
    columns = (TextColumn("building llama-server"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress, log.open("ab") as out:
        task = progress.add_task("build", total=None)
        process = subprocess.Popen(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(JOBS)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            if step := STEP.match(line.decode(errors="replace")):
                done, total = int(step[1]), int(step[2] or 100)
                progress.update(task, completed=done, total=total)
        if process.wait() != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            raise LlamaServerError(f"build failed ({process.returncode}); the end of {log}:\n{tail}")
    return build / "bin" / "llama-server"


def llama_server_binary(console: Console | None = None) -> Path:
    """The cached `llama-server`, built first when it is not there yet."""
    console = console or Console(stderr=True)
    target = cache_dir() / "llama-server"
    if target.exists():
        return target
    work = cache_dir() / "build"
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    built = _build(_sources(work, console), work / "tree", work / "build.log", console)
    # copied under a temporary name and renamed, so that a binary in place is always a whole one
    staging = target.with_name(".llama-server.partial")
    shutil.copy2(built, staging)
    staging.rename(target)
    shutil.rmtree(work)
    console.log(f"built {target} in {time.monotonic() - started:.0f} s")
    return target


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LlamaServerError(f"llama-server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:  # 503 while the model loads
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise LlamaServerError(f"llama-server was not healthy after {timeout:.0f} s:\n{log.read_text(errors='replace')}")


@contextmanager
def llama_server(model: Path, parallel: int, context: int, threads: int, binary: Path | None = None,
                 extra: tuple[str, ...] = (), timeout: float = 180) -> Iterator[str]:
    """`llama-server` on 127.0.0.1 and a free port with `parallel` slots sharing `context` tokens; yields its URL
    once /health answers 200, and stops it on exit."""
    binary = binary or llama_server_binary()
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="llama-server-")) / "server.log"
    command = [str(binary), "-m", str(model), "-np", str(parallel), "-c", str(context), "-t", str(threads),
               "--host", "127.0.0.1", "--port", str(port), *extra]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log, timeout)
        yield url
    finally:
        stop(process)


if __name__ == "__main__":
    print(llama_server_binary())
