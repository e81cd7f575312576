"""The package as pip installs it: a wheel built from this directory holds every module, the
Django management commands, the type marker and the README, with the extras and the version."""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import zipfile
from pathlib import Path

import edge_session

PACKAGE = Path(__file__).resolve().parents[1]


class PackageTests(unittest.TestCase):
    def test_the_wheel_installs_the_package_with_its_extras_and_commands(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            # Built from a copy: a build writes build/ and *.egg-info next to the sources.
            source = Path(tmp, "source")
            shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
            wheels = Path(tmp, "wheels")
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "--quiet",
                    "--no-deps",
                    "--no-build-isolation",
                    "-w",
                    str(wheels),
                    str(source),
                ],
                check=True,
                capture_output=True,
            )
            (wheel,) = wheels.glob("*.whl")
            self.assertEqual(wheel.name, f"edge_session-{edge_session.__version__}-py3-none-any.whl")
            with zipfile.ZipFile(wheel) as archive:
                names = set(archive.namelist())
                metadata = email.message_from_bytes(
                    archive.read(f"edge_session-{edge_session.__version__}.dist-info/METADATA")
                )
            modules = {
                f"edge_session/{path.relative_to(PACKAGE / 'src/edge_session')}"
                for path in (PACKAGE / "src/edge_session").rglob("*.py")
            }
            self.assertLessEqual(modules | {"edge_session/py.typed"}, names)
            self.assertIn("edge_session/management/commands/edge_session_import.py", names)
            self.assertFalse([name for name in names if name.startswith("tests/")], "the tests are not shipped")
            self.assertEqual(metadata["Version"], edge_session.__version__)
            self.assertEqual(set(metadata.get_all("Provides-Extra") or []), {"cookie", "django", "flask", "mongo"})
            self.assertIn('Django>=4.2; extra == "django"', metadata.get_all("Requires-Dist") or [])
            # AES-GCM-SIV (AESGCMSIV) arrived in cryptography 42.
            self.assertIn('cryptography>=42; extra == "cookie"', metadata.get_all("Requires-Dist") or [])
            readme = str(metadata.get_payload())
            self.assertTrue(readme.startswith("# edge-session for Python"), "the README is the description")
            self.assertIn("## Moving sessions from a legacy store", readme)

            target = Path(tmp, "installed")
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
                check=True,
                capture_output=True,
            )
            environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
            environment["PYTHONPATH"] = str(target)
            shown = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import edge_session, edge_session.django, edge_session.flask;"
                    " print(edge_session.__file__, edge_session.__version__)",
                ],
                check=True,
                capture_output=True,
                text=True,
                env={**environment, "DJANGO_SETTINGS_MODULE": ""},
            ).stdout.split()
            self.assertEqual(shown, [str(target / "edge_session/__init__.py"), edge_session.__version__])


if __name__ == "__main__":
    unittest.main()
