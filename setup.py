"""Packaging hook (metadata lives in pyproject.toml): the presets stay in the top-level configs/ folder of the
checkout and are shipped inside the package (splat4d/configs/) so that `--preset fast` works from an installed
wheel."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithPresets(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "splat4d" / "configs"
        self.mkpath(str(target))
        for preset in sorted(Path(__file__).resolve().parent.joinpath("configs").glob("*.yaml")):
            self.copy_file(str(preset), str(target / preset.name))


setup(cmdclass={"build_py": BuildWithPresets})
