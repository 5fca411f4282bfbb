"""One module per tuning strategy; importing this package imports every module in it, and each
registers its strategy, so a new strategy is one new file here."""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
