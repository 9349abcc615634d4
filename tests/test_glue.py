"""Numbers glued into a chapter's text: myst-nb's glue where it is installed, else nothing."""
import builtins
import importlib.util

import zfcourse.glue


def test_glue_is_myst_nbs_where_installed():
    import myst_nb
    assert zfcourse.glue.glue is myst_nb.glue


def test_without_myst_nb_glue_does_nothing(monkeypatch):
    real = builtins.__import__

    def no_myst_nb(name, *args, **kwargs):
        if name.startswith("myst_nb"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_myst_nb)
    spec = importlib.util.spec_from_file_location("glue_without_myst_nb", zfcourse.glue.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.glue is not zfcourse.glue.glue
    assert module.glue("x", 1.5, display=False) is None
