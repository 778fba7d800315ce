"""Settings: defaults < TOML file < LIVEREC_* environment < explicit arguments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from liverec.settings import (
    DEFAULT_DATA_DIR,
    Settings,
    load_settings,
    redact_text,
    redact_url,
    value_sources,
)


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


def test_the_model_table_is_typed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[model] has the Transformer's defaults (those of the dataclass it replaced, less the options
    removed) and checks names, types and ranges when it is read."""
    from liverec.model.transformer import TransformerConfig
    from liverec.settings import ModelSettings

    old = {"text_dim": 384, "d_model": 64, "n_layers": 2, "n_heads": 2, "max_len": 200, "dropout": 0.2}
    old |= {"id_dropout": 0.0, "text_loss": 0.0, "event_types": False}
    old |= {"loss": "full", "n_negatives": 1024}
    assert load_settings().model.model_dump() == old == ModelSettings().model_dump()
    assert TransformerConfig(n_items=1).to_dict() == {**old, "n_items": 1}
    s = load_settings(write(tmp_path / "m.toml", '[model]\nd_model = 32\nloss = "sampled"\n'))
    assert (s.model.d_model, s.model.loss, s.model.n_layers) == (32, "sampled", 2)
    monkeypatch.setenv("LIVEREC_MODEL__N_LAYERS", "3")
    assert load_settings().model.n_layers == 3
    for bad, says in [
        ("d_modle = 32", r"model\n.*unknown key 'd_modle' \(did you mean 'd_model'\?\)"),
        ("dropout = 1.5", r"model.dropout\n.*less than 1"),
        ('loss = "bpr"', r"model.loss\n.*'full' or 'sampled'"),
    ]:
        with pytest.raises(ValidationError, match=says):
            load_settings(write(tmp_path / "bad.toml", f"[model]\n{bad}\n"))


# The tables that were free-form dicts validated downstream, with their defaults before typing: a
# changed default is a behaviour change. The one intended change: [join] window_s, 1,800 s -> 300 s
# (the server's value; see JoinConfig).
OLD_DEFAULTS: dict[str, dict[str, object]] = {
    "train": {
        "epochs": 200, "batch_size": 128, "lr": 0.001, "weight_decay": 0.0, "grad_clip": 1.0,
        "patience": 10, "eval_every": 1, "crop": True, "seed": 0, "threads": 2, "max_seconds": 0.0,
        "ema_decay": 0.0, "compile": False, "schedule": "constant", "warmup_epochs": 3, "stop_after": 0,
        "shuffle_ties": False, "reverse": 0.0,
    },
    "online": {
        "batch_size": 256, "replay_ratio": 0.25, "replay_capacity": 100000, "replay_half_life": 50000.0,
        "window": 20, "dropout": False, "lr": 0.0003, "lr_decay_steps": 20000.0, "weight_decay": 0.0,
        "grad_clip": 1.0, "ema_decay": 0.98, "unlikelihood": 0.5, "ips_max": 0.0, "item_ttl_s": 0.0,
        "compile": False, "seed": 0, "threads": 1, "shards": 2, "nice": 10,
    },
    "gate": {
        "publish_events": 2000, "publish_s": 5.0, "min_eval": 200, "eval_per_page": 64, "tolerance": 0.01,
        "keep_versions": 20,
    },
    "filters": {
        "duplicate_window_s": 2.0, "max_repeats": 3, "repeat_window_s": 3600.0, "user_max_per_minute": 120,
        "item_max_per_minute": 300, "item_min_users": 5, "quarantine_s": 3600.0,
        "serving": True,  # added (issue 25 item 7): the server's live counts are screened too
    },
    "join": {"window_s": 300.0, "aggregate": "sum", "grace_s": 0.0, "max_open": 1000000},
}  # fmt: skip


def test_every_table_is_typed_with_the_old_defaults_and_described() -> None:
    s = Settings()
    for table, old in OLD_DEFAULTS.items():
        assert getattr(s, table).model_dump() == old, table
    policy = s.policy
    assert (policy.name, policy.candidates, policy.new_item_slots, policy.new_item_positives) == (
        "greedy",
        100,
        0,
        5.0,
    )
    assert policy.params() == {}  # every policy parameter unset: the constructors' defaults apply
    for name, field in Settings.model_fields.items():
        if name in ("data_dir", "store_url", "registry_dir"):
            continue
        assert isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel), name
        if name != "model":  # typed by its own owner, with its own test
            undocumented = [k for k, f in field.annotation.model_fields.items() if not f.description]
            assert not undocumented, (name, undocumented)


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ("[train]\nepoch = 3", r"train\n.*unknown key 'epoch' \(did you mean 'epochs'\?\)"),
        ("[online]\nlearning_rate = 0.1", r"online\n.*unknown key 'learning_rate'; known keys: batch_size"),
        ("[gate]\npublish = 10", r"gate\n.*unknown key 'publish'"),
        (
            "[filters]\nmax_repeat = 2",
            r"filters\n.*unknown key 'max_repeat' \(did you mean 'max_repeats'\?\)",
        ),
        ("[join]\nwindow = 60", r"join\n.*unknown key 'window' \(did you mean 'window_s'\?\)"),
        ("[policy]\ncandidate = 5", r"policy\n.*unknown key 'candidate' \(did you mean 'candidates'\?\)"),
        ("[server]\nprot = 1", r"server\n.*unknown key 'prot' \(did you mean 'port'\?\)"),
    ],
)
def test_unknown_keys_name_the_table_and_key(tmp_path: Path, toml: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        load_settings(write(tmp_path / "typo.toml", toml + "\n"))


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[train]\nreverse = 1.5", "train.reverse"),
        ('[train]\nschedule = "linear"', "train.schedule"),
        ("[online]\nshards = 0", "online.shards"),
        ("[gate]\npublish_events = 0", "gate.publish_events"),
        ("[filters]\nquarantine_s = -1", "filters.quarantine_s"),
        ("[join]\nwindow_s = -1", "join.window_s"),
        ('[join]\naggregate = "mean"', "join.aggregate"),
        ("[policy]\ncandidates = 0", "policy.candidates"),
        ('[policy]\nname = "ucb"', "policy.name"),
        ('[policy]\nname = "epsilon"\nepsilon = 2.0', "policy.epsilon"),
    ],
)
def test_values_out_of_range_fail_at_load_naming_the_key(tmp_path: Path, toml: str, key: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(key) + r"\n"):
        load_settings(write(tmp_path / "bad.toml", toml + "\n"))


def test_typed_tables_from_toml_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(
        tmp_path / "c.toml",
        '[train]\nepochs = 3\nschedule = "cosine"\n[gate]\npublish_s = 2\n[policy]\nname = "thompson"\n',
    )
    monkeypatch.setenv("LIVEREC_ONLINE__LR", "0.01")
    monkeypatch.setenv("LIVEREC_POLICY__SIGMA", "0.25")
    monkeypatch.setenv("LIVEREC_FILTERS__MAX_REPEATS", "7")
    s = load_settings(cfg)
    assert (s.train.epochs, s.train.schedule, s.train.batch_size) == (3, "cosine", 128)
    assert (s.gate.publish_s, s.online.lr, s.filters.max_repeats) == (2.0, 0.01, 7)
    assert s.policy.params() == {"sigma": 0.25}


def test_policy_parameters_are_checked_against_the_named_policy(tmp_path: Path) -> None:
    from liverec.policy import MMR, ThompsonSampling
    from liverec.policy.registry import policy_from_settings

    with pytest.raises(
        ValidationError, match=r"unknown parameter\(s\) for policy 'epsilon': sigma; accepted"
    ):
        Settings(policy={"name": "epsilon", "sigma": 0.3})
    with pytest.raises(ValidationError, match="'greedy': seed"):
        load_settings(write(tmp_path / "g.toml", "[policy]\nseed = 1\n"))  # name defaults to greedy
    with pytest.raises(ValidationError, match="mmr_pool_factor needs mmr"):
        Settings(policy={"name": "linucb", "mmr_pool_factor": 2})
    s = Settings(policy={"name": "thompson", "sigma": 0.3, "user_window": 5, "mmr": 0.6})
    policy = policy_from_settings(s.policy)
    assert isinstance(policy, MMR) and policy.lam == 0.6
    inner = policy.policy
    assert isinstance(inner, ThompsonSampling) and inner.sigma == 0.3 and inner.user.window == 5
    assert inner.a == ThompsonSampling().a  # unset: the constructor's default


def test_feedback_window_s_is_a_deprecated_alias_of_the_join_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.warns(FutureWarning, match=r"feedback_window_s is deprecated: set \[join\] window_s"):
        s = load_settings(write(tmp_path / "old.toml", "[policy]\nfeedback_window_s = 60\n"))
    assert s.join.window_s == 60.0 and "feedback_window_s" not in s.policy.model_dump()
    with pytest.warns(FutureWarning):  # the same value twice is not a conflict
        assert Settings(policy={"feedback_window_s": 60}, join={"window_s": 60.0}).join.window_s == 60.0
    with pytest.raises(ValidationError, match=r"feedback_window_s = 60 and \[join\] window_s = 90 differ"):
        Settings(policy={"feedback_window_s": 60}, join={"window_s": 90})
    monkeypatch.setenv("LIVEREC_JOIN__WINDOW_S", "90")  # from different sources, still one window
    with pytest.raises(ValidationError, match="differ"):
        load_settings(write(tmp_path / "old2.toml", "[policy]\nfeedback_window_s = 60\n"))
    monkeypatch.delenv("LIVEREC_JOIN__WINDOW_S")
    monkeypatch.setenv("LIVEREC_POLICY__FEEDBACK_WINDOW_S", "45")
    with pytest.warns(FutureWarning):
        assert load_settings().join.window_s == 45.0


def test_value_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path / "c.toml", "[server]\nport = 1\nhost = 'h'\n[policy]\nfeedback_window_s = 30\n")
    monkeypatch.setenv("LIVEREC_SERVER__PORT", "2")
    monkeypatch.setenv("LIVEREC_DATA_DIR", str(tmp_path))
    found = value_sources(cfg, server={"max_k": 5})
    assert found == {
        "server.port": "env LIVEREC_SERVER__PORT",
        "server.host": f"file {cfg}",
        "server.max_k": "argument",
        "data_dir": "env LIVEREC_DATA_DIR",
        "join.window_s": f"file {cfg} as [policy] feedback_window_s (deprecated)",
        "store_url": "default (from data_dir)",
        "registry_dir": "default (from data_dir)",
    }


def test_redact_url() -> None:
    assert redact_url("postgresql://u:pw@host/db") == "postgresql://u:***@host/db"
    assert redact_url("redis://:pw@host:6380/0") == "redis://:***@host:6380/0"
    assert redact_url("sqlite:///data/events.db") == "sqlite:///data/events.db"
    assert redact_url("postgresql://u@host/db") == "postgresql://u@host/db"  # no password


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://u:secret@h/db?password=x&sslpassword=y",
            "postgresql://u:***@h/db?password=***&sslpassword=***",
        ),
        (
            "postgres://u:p%40ss:w@h:5432/db?schema=s&passfile=/home/u/.pgpass&application_name=a",
            "postgres://u:***@h:5432/db?schema=s&passfile=***&application_name=a",
        ),
        (
            "rediss://default:tok@h/0?prefix=p&access_token=t&client_secret=c",
            "rediss://default:***@h/0?prefix=p&access_token=***&client_secret=***",
        ),
        ("redis://h:6379/0?api_key=k&Password=P", "redis://h:6379/0?api_key=***&Password=***"),
        ("postgresql://u:pw@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
        ("postgresql://u:a@b@h/db", "postgresql://u:***@h/db"),  # an unescaped @ in the password
        ("postgresql://u:pw@[bad/db", "postgresql://u:***@[bad/db"),  # not parseable: still masked
        ("host=h password=secret dbname=d", "host=h password=*** dbname=d"),  # libpq conninfo
        ("memory://", "memory://"),
        ("sqlite:////abs/events.db", "sqlite:////abs/events.db"),
    ],
)
def test_redact_url_masks_every_secret(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_masks_secrets_quoted_in_a_message() -> None:
    url = "postgresql://u:s3cr%21t@h/db?sslpassword=hunter2"
    message = f'connection to {url} failed: bad "s3cr!t" for sslpassword hunter2'
    out = redact_text(message, url)
    shown = "postgresql://u:***@h/db?sslpassword=***"
    assert out == f'connection to {shown} failed: bad "***" for sslpassword ***'
