"""Settings: defaults < TOML file < LIVEREC_* environment < explicit arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from liverec.settings import DEFAULT_DATA_DIR, Settings, load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults() -> None:
    s = load_settings()
    assert s.data_dir == DEFAULT_DATA_DIR
    assert s.store_url == f"sqlite:///{DEFAULT_DATA_DIR / 'events.db'}"
    assert s.registry_dir == DEFAULT_DATA_DIR / "registry"
    assert (s.server.host, s.server.port) == ("127.0.0.1", 8000)
    assert s.server.max_body_bytes > 0 and s.server.max_batch_events > 0
    assert s.popularity.trending_half_life_s < s.popularity.half_life_s
    assert s.rewards.impression == 0.0 < s.rewards.click < s.rewards.purchase
    assert s.rewards.dislike < 0 and s.rewards.skip < 0


def test_derived_paths_follow_data_dir_unless_set(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.store_url == f"sqlite:///{tmp_path / 'events.db'}"
    assert s.registry_dir == tmp_path / "registry"
    s = Settings(data_dir=tmp_path, store_url="memory://", registry_dir=tmp_path / "elsewhere")
    assert (s.store_url, s.registry_dir) == ("memory://", tmp_path / "elsewhere")


def test_toml_file(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "liverec.toml",
        f"""
data_dir = "{tmp_path / "d"}"

[server]
port = 9001
max_batch_events = 77

[popularity]
half_life_s = 120.0

[rewards]
purchase = 9
""",
    )
    s = load_settings(cfg)
    assert s.data_dir == tmp_path / "d"
    assert s.store_url == f"sqlite:///{tmp_path / 'd' / 'events.db'}"
    assert (s.server.port, s.server.max_batch_events, s.server.host) == (9001, 77, "127.0.0.1")
    assert s.popularity.half_life_s == 120.0
    assert s.rewards.purchase == 9.0
    assert s.rewards.click == 1.0  # untouched keys keep their defaults
    assert load_settings(str(cfg)).server.port == 9001  # a str path works too


def test_config_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path / "c.toml", "[server]\nport = 9100\n")
    monkeypatch.setenv("LIVEREC_CONFIG", str(cfg))
    assert load_settings().server.port == 9100
    other = write(tmp_path / "other.toml", "[server]\nport = 9200\n")
    assert load_settings(other).server.port == 9200  # the argument wins over $LIVEREC_CONFIG


def test_environment_with_nested_delimiter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEREC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LIVEREC_SERVER__PORT", "9300")
    monkeypatch.setenv("LIVEREC_REWARDS__PURCHASE", "5")
    monkeypatch.setenv("LIVEREC_STATE__MAX_SEQUENCE", "17")
    s = load_settings()
    assert s.store_url == f"sqlite:///{tmp_path / 'events.db'}"
    assert (s.server.port, s.rewards.purchase, s.state.max_sequence) == (9300, 5.0, 17)
    assert s.server.host == "127.0.0.1"


def test_precedence_explicit_over_env_over_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(
        tmp_path / "c.toml", '[server]\nport = 1111\nhost = "toml-host"\nmax_k = 11\n[rewards]\nclick = 3\n'
    )
    monkeypatch.setenv("LIVEREC_SERVER__PORT", "2222")
    monkeypatch.setenv("LIVEREC_SERVER__MAX_K", "22")
    s = load_settings(cfg, server={"port": 3333})
    assert s.server.port == 3333  # explicit > env > TOML
    assert s.server.max_k == 22  # env > TOML
    assert s.server.host == "toml-host"  # TOML > default, and nested groups merge rather than replace
    assert s.rewards.click == 3.0
    assert load_settings(cfg).server.port == 2222
    monkeypatch.delenv("LIVEREC_SERVER__PORT")
    assert load_settings(cfg).server.port == 1111


def test_unknown_keys_are_rejected_clearly(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", 'colour = "red"\n')
    with pytest.raises(ValidationError, match="colour") as exc:
        load_settings(cfg)
    assert "Extra inputs are not permitted" in str(exc.value)
    with pytest.raises(ValidationError, match="colour"):
        load_settings(colour="red")
    with pytest.raises(ValidationError, match="colour"):
        Settings(colour="red")  # type: ignore[call-arg]


def test_unknown_nested_keys_are_rejected_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo inside a group ([server] prot = ...) must not be silently ignored."""
    with pytest.raises(ValidationError, match="prot"):
        load_settings(write(tmp_path / "typo.toml", "[server]\nprot = 9000\n"))
    with pytest.raises(ValidationError, match="clik"):
        load_settings(write(tmp_path / "typo2.toml", "[rewards]\nclik = 2\n"))
    monkeypatch.setenv("LIVEREC_SERVER__PROT", "9000")
    with pytest.raises(ValidationError, match="prot"):
        load_settings()


def test_invalid_values_are_rejected_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="port"):
        load_settings(write(tmp_path / "a.toml", "[server]\nport = 70000\n"))
    with pytest.raises(ValidationError, match="cooc_weight"):
        load_settings(write(tmp_path / "b.toml", "[popularity]\ncooc_weight = 2\n"))
    monkeypatch.setenv("LIVEREC_SERVER__PORT", "eighty")
    with pytest.raises(ValidationError, match="port"):
        load_settings()


def test_bad_toml_syntax_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_settings(write(tmp_path / "bad.toml", "[server\nport = 1\n"))


def test_missing_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(FileNotFoundError, match=r"nope\.toml"):
        load_settings(missing)
    monkeypatch.setenv("LIVEREC_CONFIG", str(missing))
    with pytest.raises(FileNotFoundError, match=r"nope\.toml"):
        load_settings()
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path)  # a directory is not a config file


def test_policy_section_builds_the_engines_policy_and_candidate_pool(tmp_path: Path) -> None:
    from liverec.policy import ThompsonSampling
    from liverec.serve.engine import Engine

    policy = {"name": "thompson", "user_weight": 2.0, "candidates": 7, "feedback_window_s": 5.0}
    engine = Engine(Settings(data_dir=tmp_path, store_url="memory://", policy=policy))
    try:
        assert engine.recommender.candidates == 7
        assert isinstance(engine.recommender.policy, ThompsonSampling)
        assert engine.recommender.policy.user.weight == 2.0
    finally:
        engine.close()
    with pytest.raises(ValueError, match="user_wieght"):
        Engine(
            Settings(data_dir=tmp_path, store_url="memory://", policy={"name": "thompson", "user_wieght": 1})
        )


def test_bad_policy_settings_fail_before_the_store_is_opened(tmp_path: Path) -> None:
    """A constructor that raises cannot be closed: it must not have opened the store (a file)."""
    from liverec.serve.engine import Engine

    db = tmp_path / "events.db"
    for policy in ({"name": "thompson", "user_weight": -1.0}, {"name": "greedy", "candidates": "many"}):
        with pytest.raises(ValueError):
            Engine(Settings(data_dir=tmp_path, store_url=f"sqlite:///{db}", policy=policy))
        assert not db.exists()
    engine = Engine(Settings(data_dir=tmp_path, store_url=f"sqlite:///{db}"))
    engine.close()
    assert db.exists()  # the same URL with valid settings does open it
