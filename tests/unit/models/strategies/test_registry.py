"""The strategy registry: built-ins and installed plug-ins by entry point, the user's files."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import UsageError
from core.settings import load_settings
from models.strategies.base import Strategy
from models.strategies.donchian import DonchianBreakout
from models.strategies.ml_model import MlModel
from models.strategies.registry import available_strategies, load_strategy
from models.strategies.rsi_reversion import RsiReversion
from models.strategies.sma_cross import SmaCross

BUILT_INS: dict[str, type[Strategy]] = {
    "sma_cross": SmaCross,
    "donchian_breakout": DonchianBreakout,
    "rsi_reversion": RsiReversion,
    "ml_model": MlModel,
}

USER_STRATEGY = '''
import numpy as np
from models.strategies.base import ParamSpec, Signals


class AboveFirst:
    """Long while the close is above the first close."""

    name = "{name}"
    params = (ParamSpec(name="scale", kind="float", default=1.0, low=0.5, high=2.0),)
    needs_features = ()

    def __init__(self, scale=1.0):
        self.scale = scale

    def signals(self, bars, features=None):
        close = bars["close"].to_numpy()
        return Signals(target=np.where(close > close[0] * self.scale, 1.0, 0.0))
'''

NOT_A_STRATEGY = """
class Half:
    name = "half"
    params = ["fast"]
"""


def write_user_file(folder: Path, file: str = "my_strats.py", name: str = "above_first") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file
    path.write_text(USER_STRATEGY.format(name=name), encoding="utf-8")
    return path


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Return an installed-looking folder (dist-info + module) put on ``sys.path``."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    yield site
    for module in [m for m in sys.modules if m.startswith("acme_")]:
        del sys.modules[module]


def install_plugin(site: Path, dist: str, entries: dict[str, str], module_text: str) -> None:
    """Install distribution ``dist`` with one module ``acme_<dist>`` and ``entries``."""
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n", encoding="utf-8"
    )
    lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[solodesk.strategies]\n{lines}", encoding="utf-8")
    (site / f"acme_{dist}.py").write_text(module_text, encoding="utf-8")


def test_available_strategies_built_ins_come_from_entry_points() -> None:
    # Act
    found = available_strategies()

    # Assert
    for name in BUILT_INS:
        assert found[name] == "entry point solodesk"


@pytest.mark.parametrize("name", list(BUILT_INS))
def test_load_strategy_built_in_returns_its_class(name: str) -> None:
    # Act
    cls = load_strategy(name)

    # Assert
    assert cls is BUILT_INS[name]
    assert cls.name == name


def test_load_strategy_installed_plugin_found_by_entry_point(plugin_site: Path) -> None:
    # Arrange
    install_plugin(
        plugin_site,
        "trendkit",
        {"acme_above": "acme_trendkit:AboveFirst"},
        USER_STRATEGY.format(name="acme_above"),
    )

    # Act
    found = available_strategies()
    cls = load_strategy("acme_above")

    # Assert
    assert found["acme_above"] == "entry point trendkit"
    assert cls.__module__ == "acme_trendkit"
    assert cls.name == "acme_above"


def test_load_strategy_plugin_reusing_built_in_name_raises_naming_both(
    plugin_site: Path,
) -> None:
    # Arrange
    install_plugin(
        plugin_site,
        "copycat",
        {"sma_cross": "acme_copycat:AboveFirst"},
        USER_STRATEGY.format(name="sma_cross"),
    )

    # Act / Assert
    with pytest.raises(UsageError, match="more than once") as raised:
        load_strategy("sma_cross")
    assert "entry point solodesk" in str(raised.value)
    assert "entry point copycat" in str(raised.value)


def test_load_strategy_plugin_import_failure_raises_naming_entry_point(
    plugin_site: Path,
) -> None:
    # Arrange
    install_plugin(plugin_site, "broken", {"acme_broken": "acme_broken:Nope"}, "x = 1\n")

    # Act / Assert
    with pytest.raises(UsageError, match=r"entry point broken \(acme_broken:Nope\)"):
        load_strategy("acme_broken")


def test_load_strategy_user_file_relative_to_base_dir(tmp_path: Path) -> None:
    # Arrange
    write_user_file(tmp_path / "strats")
    user = {"above_first": "strats/my_strats.py:AboveFirst"}

    # Act
    cls = load_strategy("above_first", user=user, base_dir=tmp_path)

    # Assert
    assert cls.name == "above_first"
    assert [spec.name for spec in cls.params] == ["scale"]


def test_load_strategy_user_file_absolute_path_ignores_base_dir(tmp_path: Path) -> None:
    # Arrange
    path = write_user_file(tmp_path / "elsewhere")
    user = {"above_first": f"{path}:AboveFirst"}

    # Act
    cls = load_strategy("above_first", user=user, base_dir=tmp_path / "unrelated")

    # Assert
    assert cls.name == "above_first"


def test_load_strategy_settings_file_folder_is_default_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: the settings file names the user file relative to its own folder
    desk = tmp_path / "desk"
    write_user_file(desk)
    config = desk / "solodesk.toml"
    config.write_text('[strategies]\nabove_first = "my_strats.py:AboveFirst"\n', encoding="utf-8")
    monkeypatch.setenv("SOLODESK_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)
    settings = load_settings()

    # Act
    origins = available_strategies(settings.strategies)
    cls = load_strategy("above_first", user=settings.strategies)

    # Assert
    assert origins["above_first"] == f"{(desk / 'my_strats.py').resolve()}:AboveFirst"
    assert cls.name == "above_first"


def test_load_strategy_user_entry_reusing_built_in_name_raises_naming_both(
    tmp_path: Path,
) -> None:
    # Arrange
    write_user_file(tmp_path, name="sma_cross")
    user = {"sma_cross": "my_strats.py:AboveFirst"}

    # Act / Assert
    with pytest.raises(UsageError, match="more than once") as raised:
        load_strategy("sma_cross", user=user, base_dir=tmp_path)
    message = str(raised.value)
    assert "entry point solodesk (models.strategies.sma_cross:SmaCross)" in message
    assert "settings strategies.sma_cross" in message
    assert "my_strats.py:AboveFirst" in message


def test_available_strategies_clash_raises(tmp_path: Path) -> None:
    # Arrange
    user = {"rsi_reversion": "my_strats.py:AboveFirst"}

    # Act / Assert
    with pytest.raises(UsageError, match="'rsi_reversion' is defined more than once"):
        available_strategies(user, base_dir=tmp_path)


def test_load_strategy_unknown_name_lists_available() -> None:
    # Act / Assert
    with pytest.raises(UsageError, match="unknown strategy 'smacross'") as raised:
        load_strategy("smacross", user={"mine": "x.py:Mine"})
    assert "donchian_breakout, mine, ml_model, rsi_reversion, sma_cross" in str(raised.value)


def test_load_strategy_class_without_interface_raises_naming_file_and_gaps(
    tmp_path: Path,
) -> None:
    # Arrange
    (tmp_path / "half.py").write_text(NOT_A_STRATEGY, encoding="utf-8")

    # Act / Assert
    with pytest.raises(UsageError, match="is not a strategy") as raised:
        load_strategy("half", user={"half": "half.py:Half"}, base_dir=tmp_path)
    message = str(raised.value)
    assert str((tmp_path / "half.py").resolve()) in message
    assert "no `params` (a tuple of ParamSpec)" in message
    assert "no `signals(bars, features)` method" in message


def test_load_strategy_class_name_differs_from_registered_name_raises(tmp_path: Path) -> None:
    # Arrange
    write_user_file(tmp_path, name="something_else")

    # Act / Assert
    with pytest.raises(UsageError, match="registered as 'above_first'"):
        load_strategy(
            "above_first", user={"above_first": "my_strats.py:AboveFirst"}, base_dir=tmp_path
        )


def test_load_strategy_missing_class_lists_classes_in_file(tmp_path: Path) -> None:
    # Arrange
    write_user_file(tmp_path)

    # Act / Assert
    with pytest.raises(UsageError, match=r"defines no 'Below' \(classes there: .*AboveFirst"):
        load_strategy("below", user={"below": "my_strats.py:Below"}, base_dir=tmp_path)


def test_load_strategy_missing_file_raises_naming_path(tmp_path: Path) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=r"nothere\.py not found"):
        load_strategy("ghost", user={"ghost": "nothere.py:Ghost"}, base_dir=tmp_path)


def test_load_strategy_file_failing_import_raises_naming_error(tmp_path: Path) -> None:
    # Arrange
    (tmp_path / "boom.py").write_text("raise RuntimeError('no market today')\n", encoding="utf-8")

    # Act / Assert
    with pytest.raises(UsageError, match="RuntimeError: no market today"):
        load_strategy("boom", user={"boom": "boom.py:Boom"}, base_dir=tmp_path)


def test_load_strategy_entry_without_class_raises_showing_form(tmp_path: Path) -> None:
    # Act / Assert
    with pytest.raises(UsageError, match=r"expected 'path/to/file\.py:ClassName'"):
        load_strategy("bare", user={"bare": "bare.py"}, base_dir=tmp_path)


def test_load_strategy_invalid_default_reported(tmp_path: Path) -> None:
    # Arrange: a default outside its own range
    text = USER_STRATEGY.format(name="above_first").replace("default=1.0", "default=3.0")
    (tmp_path / "bad_default.py").write_text(text, encoding="utf-8")

    # Act / Assert
    with pytest.raises(UsageError, match=r"bad default: parameter scale=3\.0"):
        load_strategy(
            "above_first", user={"above_first": "bad_default.py:AboveFirst"}, base_dir=tmp_path
        )


def test_load_strategy_user_class_pickles_by_reference(tmp_path: Path) -> None:
    # Arrange: sweeps and process pools pickle what they send to workers
    write_user_file(tmp_path)
    cls = load_strategy(
        "above_first", user={"above_first": "my_strats.py:AboveFirst"}, base_dir=tmp_path
    )

    # Act
    restored = pickle.loads(pickle.dumps(cls))

    # Assert
    assert restored is cls
