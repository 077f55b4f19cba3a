"""The one import root: every package folder is declared in setup.cfg and imports as kd_edge.*."""
import configparser
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def declared_packages():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    packages = [p.strip() for p in cfg["options"]["packages"].split("\n") if p.strip()]
    mapping = {}
    for line in cfg["options"]["package_dir"].split("\n"):
        if "=" in line:
            name, folder = (s.strip() for s in line.split("="))
            mapping[name] = folder
    return packages, mapping


def package_folder(name, mapping):
    for prefix, folder in mapping.items():
        if name == prefix or name.startswith(prefix + "."):
            return ROOT / folder / Path(*name[len(prefix) + 1:].split(".")) if name != prefix else ROOT / folder
    return ROOT / Path(*name.split("."))


def test_every_package_folder_is_declared():
    packages, mapping = declared_packages()
    declared = {package_folder(p, mapping).resolve() for p in packages}
    for top in ("kd_edge", "converters", "benchmarks", "android_harness"):
        for init in (ROOT / top).rglob("__init__.py"):
            assert init.parent.resolve() in declared, f"{init.parent} is a package missing from setup.cfg"


def test_declared_packages_import_under_one_root():
    packages, mapping = declared_packages()
    for name in packages:
        assert name == "kd_edge" or name.startswith("kd_edge.")
        module = importlib.import_module(name)
        assert Path(module.__file__).parent.resolve() == package_folder(name, mapping).resolve()
