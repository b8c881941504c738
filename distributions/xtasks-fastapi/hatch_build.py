"""Where an add-on's package comes from when hatchling builds it.

The add-ons' code stays in the repository's ``src/`` beside the core; this directory holds
only the distribution's project files. Each add-on keeps an identical copy of this hook,
because an sdist must build on its own (``tests/test_distributions.py`` checks the copies
match):

- from a clone, the sdist and the wheel take ``../../src/<package>``, and an editable
  install puts ``../../src`` on ``sys.path`` (nothing copied: edits show at once);
- from the sdist, which holds its own ``src/<package>``, the hook does nothing: the wheel
  target's ``packages`` finds it, as in any src-layout project.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class AddOnSourcesHook(BuildHookInterface):  # type: ignore[type-arg]
    """Includes the add-on's package from the repository's ``src/`` when building there."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        package = self.metadata.name.replace("-", "_")
        root = Path(self.root)
        if (root / "src" / package / "__init__.py").is_file():
            return  # an unpacked sdist: it carries its own copy
        source = root.parent.parent / "src" / package
        if not (source / "__init__.py").is_file():
            raise FileNotFoundError(
                f"{self.metadata.name}: no package {package!r} in {root / 'src'} (an sdist) "
                f"nor in {source.parent} (a clone of the xtasks repository)"
            )
        if self.target_name == "sdist":
            build_data["force_include"][str(source)] = f"src/{package}"
        elif version == "editable":
            self._scratch = Path(tempfile.mkdtemp(prefix=f"{package}-editable-"))
            pth = self._scratch / f"_{package}_src.pth"
            pth.write_text(f"{source.parent}\n", encoding="utf-8")
            build_data["force_include_editable"][str(pth)] = pth.name
        else:
            build_data["force_include"][str(source)] = package

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
