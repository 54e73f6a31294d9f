"""The services as containers of the production image, against the local stack's
PostgreSQL, Kafka and emulators: what `make image-test` runs. Docker where its engine
answers, else podman (with the runtime and limits this kind of machine needs, see
../shared/CONTAINERS.md)."""

import shutil
import subprocess
from dataclasses import dataclass
from functools import cache


@cache
def engine() -> list[str]:
    """The container CLI, with what every build and run needs on this machine."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True, check=False).returncode == 0:
        return [docker]
    from .infra import debian_command

    podman = debian_command("podman", "podman")
    debian_command("runc", "runc")
    debian_command("debootstrap", "debootstrap")  # for a base image, with no registry to pull one from
    return [podman, "--runtime", "runc"]


def limits() -> list[str]:
    """podman with runc cannot raise the sandbox's limits: ask for ones it allows."""
    return ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"] if "podman" in engine()[0] else []


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    command: list[str]
    env: dict[str, str]
    mounts: tuple[str, ...] = ()

    def run(self) -> None:
        subprocess.run([*engine(), "rm", "-f", self.name], capture_output=True, check=False)
        hardened = [
            "--read-only",
            "--tmpfs",
            "/tmp",  # noqa: S108 - a private tmpfs inside the container
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--user",
            "10001",
        ]
        env = [arg for k, v in self.env.items() for arg in ("-e", f"{k}={v}")]
        volumes = [arg for m in self.mounts for arg in ("-v", f"{m}:{m}:ro")]
        subprocess.run(
            [
                *engine(),
                "run",
                "-d",
                "--name",
                self.name,
                "--network",
                "host",
                *limits(),
                *hardened,
                *env,
                *volumes,
                self.image,
                *self.command,
            ],
            check=True,
            capture_output=True,
        )

    def logs(self, lines: int = 40) -> str:
        out = subprocess.run([*engine(), "logs", "--tail", str(lines), self.name], capture_output=True, text=True)
        return out.stdout + out.stderr

    def stop(self) -> None:
        subprocess.run([*engine(), "rm", "-f", "-t", "20", self.name], capture_output=True, check=False)


def build(image: str, target: str = "service", base: str | None = None) -> None:
    args = [*engine(), "build", *limits(), "--network", "host", "--target", target, "-t", image]
    if base:
        args += ["--build-arg", f"PYTHON_IMAGE={base}"]
    subprocess.run([*args, "."], check=True)
