"""Config from the environment in one pattern (issue 14 item 6).

Every env var the product reads, through its config's `from_env(environ)`:
a valid value lands in the field, an invalid one is a ValueError that names the
variable and echoes the value, unset or empty keeps the default.
"""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path
from typing import Any

import pytest

from inference import DEFAULT_MAX_PIXELS, FetchConfig, InferenceConfig, RouteConfig, S3Config
from inference.env import (
    base_weights_from_env,
    cache_dir_from_env,
    data_dir_from_env,
    env_flag,
    env_float,
    env_fraction,
    env_int,
    env_list,
    env_str,
)

CONFIGS = [InferenceConfig, FetchConfig, RouteConfig, S3Config]

# (config, env var, raw value, field, expected value)
VALID = [
    (InferenceConfig, "MODEL_DIR", "runs/bundles/int8", "model_dir", Path("runs/bundles/int8")),
    (InferenceConfig, "INFERENCE_THREADS", "2", "num_threads", 2),
    (InferenceConfig, "INFERENCE_THREADS", " 4 ", "num_threads", 4),
    (InferenceConfig, "INFERENCE_RUNTIME", "tensorflow", "runtime", "tensorflow"),
    (InferenceConfig, "MAX_IMAGE_PIXELS", "1000", "max_pixels", 1000),
    (InferenceConfig, "UNSURE_THRESHOLD", "0.4", "unsure_threshold", 0.4),
    (InferenceConfig, "UNSURE_THRESHOLD", "0", "unsure_threshold", 0.0),
    (FetchConfig, "FETCH_TIMEOUT_S", "2.5", "timeout_s", 2.5),
    (FetchConfig, "FETCH_CONNECT_TIMEOUT_S", "1", "connect_timeout_s", 1.0),
    (FetchConfig, "FETCH_MAX_BYTES", "1024", "max_bytes", 1024),
    (FetchConfig, "FETCH_MAX_REDIRECTS", "0", "max_redirects", 0),
    (FetchConfig, "FETCH_ALLOWED_HOSTS", "A.com, *.b.net", "allowed_hosts", ("a.com", "*.b.net")),
    (FetchConfig, "FETCH_ALLOW_LOOPBACK", "YES", "allow_loopback", True),
    (FetchConfig, "FETCH_ALLOW_LOOPBACK", "false", "allow_loopback", False),
    (FetchConfig, "FETCH_USER_AGENT", " bot/1 ", "user_agent", "bot/1"),
    (RouteConfig, "CORS_ALLOWED_ORIGINS", "https://a.com/", "cors_origins", ("https://a.com",)),
    (S3Config, "S3_ALLOWED_BUCKETS", " photos , b.2 ,", "allowed_buckets", ("photos", "b.2")),
]

# (config, env var, raw value): each must fail with a message naming the variable.
INVALID = [
    (InferenceConfig, "INFERENCE_THREADS", "two"),
    (InferenceConfig, "INFERENCE_THREADS", "0"),
    (InferenceConfig, "MAX_IMAGE_PIXELS", "0"),  # was silently the default
    (InferenceConfig, "MAX_IMAGE_PIXELS", "-5"),
    (InferenceConfig, "MAX_IMAGE_PIXELS", "50M"),
    (InferenceConfig, "MAX_IMAGE_PIXELS", "1e6"),
    (InferenceConfig, "UNSURE_THRESHOLD", "1.5"),
    (InferenceConfig, "UNSURE_THRESHOLD", "nan"),
    (FetchConfig, "FETCH_TIMEOUT_S", "soon"),
    (FetchConfig, "FETCH_TIMEOUT_S", "inf"),
    (FetchConfig, "FETCH_CONNECT_TIMEOUT_S", "nan"),
    (FetchConfig, "FETCH_MAX_BYTES", "10MB"),
    (FetchConfig, "FETCH_MAX_REDIRECTS", "1.5"),
    (FetchConfig, "FETCH_MAX_REDIRECTS", "-1"),
    (FetchConfig, "FETCH_MAX_BYTES", "0"),  # was "`max_bytes` must be an int >= 1"
    (FetchConfig, "FETCH_TIMEOUT_S", "0"),
    (FetchConfig, "FETCH_CONNECT_TIMEOUT_S", "-2"),
    (FetchConfig, "FETCH_ALLOWED_HOSTS", "http://x.com"),
    (FetchConfig, "FETCH_USER_AGENT", "bot\nX-Evil: 1"),
    (FetchConfig, "FETCH_ALLOW_LOOPBACK", "maybe"),
    (RouteConfig, "CORS_ALLOWED_ORIGINS", "*"),
    (S3Config, "S3_ALLOWED_BUCKETS", "Photos"),
    (S3Config, "S3_ALLOWED_BUCKETS", "photos,s3://archive"),
    # set, but no entry: for FETCH_ALLOWED_HOSTS "no list" would allow every host
    (FetchConfig, "FETCH_ALLOWED_HOSTS", ",,,"),
    (S3Config, "S3_ALLOWED_BUCKETS", ","),
    (InferenceConfig, "INFERENCE_RUNTIME", "foo"),
    (RouteConfig, "CORS_ALLOWED_ORIGINS", ","),
    (RouteConfig, "CORS_ALLOWED_ORIGINS", "https://a.example:99999"),  # no such port
]


@pytest.mark.parametrize(("config", "name", "raw", "field", "expected"), VALID)
def test_a_valid_env_value_lands_in_its_field(
    config: Any, name: str, raw: str, field: str, expected: object
) -> None:
    assert getattr(config.from_env({name: raw}), field) == expected


@pytest.mark.parametrize(("config", "name", "raw"), INVALID)
def test_an_invalid_env_value_names_the_variable_and_echoes_it(
    config: Any, name: str, raw: str
) -> None:
    with pytest.raises(ValueError, match=f"{name}.*{re.escape(repr(raw.strip()))}"):
        config.from_env({name: raw})


def test_a_bad_bucket_list_says_received_once() -> None:
    expected = (
        "Env var S3_ALLOWED_BUCKETS must be a comma-separated list of S3 bucket names "
        "(3-63 characters: a-z, 0-9, '.', '-'). Received: S3_ALLOWED_BUCKETS='photos,Bad'"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        S3Config.from_env({"S3_ALLOWED_BUCKETS": "photos,Bad"})


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("value", ["", "   "])
def test_unset_or_empty_keeps_every_default(config: Any, value: str) -> None:
    names = {name for c, name, *_ in VALID + INVALID if c is config}
    assert config.from_env({}) == config()
    assert config.from_env(dict.fromkeys(names, value)) == config()


def test_from_env_reads_the_mapping_it_is_given_not_os_environ(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAX_IMAGE_PIXELS", "0")  # would be an error if read
    monkeypatch.setenv("FETCH_MAX_BYTES", "junk")
    assert InferenceConfig.from_env({}).max_pixels == DEFAULT_MAX_PIXELS
    assert FetchConfig.from_env({}) == FetchConfig()


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_has_the_same_from_env_signature(config: Any) -> None:
    params = list(inspect.signature(config.from_env).parameters.values())
    assert [p.name for p in params] == ["environ", "overrides"]
    assert params[1].kind is inspect.Parameter.VAR_KEYWORD


@pytest.mark.parametrize(
    ("config", "env", "overrides", "field", "expected"),
    [
        (InferenceConfig, {"INFERENCE_THREADS": "2"}, {"num_threads": 4}, "num_threads", 4),
        (InferenceConfig, {"INFERENCE_THREADS": "2"}, {"num_threads": None}, "num_threads", 2),
        (FetchConfig, {"FETCH_MAX_BYTES": "5"}, {"max_bytes": 7}, "max_bytes", 7),
        (RouteConfig, {}, {"cors_origins": ("https://a.com",)}, "cors_origins", ("https://a.com",)),
        (S3Config, {"S3_ALLOWED_BUCKETS": "a1b"}, {"max_bytes": 7}, "max_bytes", 7),
        (S3Config, {"S3_ALLOWED_BUCKETS": "a1b"}, {"max_bytes": None}, "allowed_buckets", ("a1b",)),
    ],
)
def test_overrides_that_are_not_none_win(
    config: Any, env: dict[str, str], overrides: dict[str, Any], field: str, expected: object
) -> None:
    assert getattr(config.from_env(env, **overrides), field) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_threads": 0}, "`num_threads` must be >= 1 (an int; None: the runtime's default)"),
        ({"max_pixels": 0}, "`max_pixels` must be an int >= 1. Received: max_pixels=0"),
        ({"max_pixels": 2.5}, "`max_pixels` must be an int >= 1. Received: max_pixels=2.5"),
        ({"unsure_threshold": 2}, "`unsure_threshold` must be a number from 0 to 1"),
    ],
)
def test_inference_config_validates_in_post_init(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        InferenceConfig(**kwargs)


# --- the helpers themselves ------------------------------------------------------

PARSE = [
    (env_int, {}, "7", 7),
    (env_int, {"minimum": 1}, "1", 1),
    (env_int, {"minimum": 1, "maximum": 10}, "10", 10),
    (env_float, {}, "-0.5", -0.5),
    (env_float, {"positive": True}, "0.5", 0.5),
    (env_fraction, {}, "1", 1.0),
    (env_flag, {}, "True", True),
    (env_flag, {}, "no", False),
    (env_str, {}, " x ", "x"),
]


@pytest.mark.parametrize(("parse", "kwargs", "raw", "expected"), PARSE)
def test_helpers_parse(parse: Any, kwargs: dict[str, Any], raw: str, expected: object) -> None:
    assert parse({"V": raw}, "V", **kwargs) == expected
    assert parse({}, "V", **kwargs) is None
    assert parse({"V": " "}, "V", **kwargs) is None


@pytest.mark.parametrize(
    ("parse", "kwargs", "raw", "rule"),
    [
        (env_int, {}, "x", "an integer"),
        (env_int, {"minimum": 1}, "0", "an integer >= 1"),
        (env_int, {"minimum": 1, "maximum": 10}, "11", "an integer from 1 to 10"),
        (env_int, {"minimum": 1, "maximum": 10}, "abc", "an integer from 1 to 10"),
        (env_int, {"maximum": 10}, "11", "an integer <= 10"),
        (env_float, {}, "nan", "a finite number"),
        (env_float, {"positive": True}, "0", "a finite number > 0"),
        (env_fraction, {}, "-0.1", "a number from 0 to 1"),
        (env_flag, {}, "on", "one of 1/true/yes/0/false/no"),
    ],
)
def test_helpers_refuse(parse: Any, kwargs: dict[str, Any], raw: str, rule: str) -> None:
    expected = f"Env var V must be {rule}. Received: V={raw!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        parse({"V": raw}, "V", **kwargs)


@pytest.mark.parametrize(
    ("config", "name", "raw"),
    [
        (RouteConfig, "CORS_ALLOWED_ORIGINS", "*"),
        (InferenceConfig, "INFERENCE_RUNTIME", "tflite"),
        (FetchConfig, "FETCH_ALLOWED_HOSTS", ",,"),
    ],
)
def test_an_env_error_says_received_once(config: Any, name: str, raw: str) -> None:
    with pytest.raises(ValueError) as info:
        config.from_env({name: raw})
    message = str(info.value)
    assert message.startswith(f"Env var {name} must be ")
    assert message.count("Received:") == 1 and message.endswith(f"Received: {name}={raw!r}")


def test_env_list_drops_empty_entries() -> None:
    assert env_list({"V": " a, ,b ,"}, "V") == ("a", "b")
    assert env_list({}, "V") == ()


# --- where data, weights and the cache live: written once ------------------------


@pytest.mark.parametrize(
    ("env", "data", "weights", "cache"),
    [
        ({}, Path("clothing-dataset-small"), "imagenet", Path("/h/.cache/clothing-classifier")),
        (
            {"CLOTHING_DATA_DIR": "/d", "XCEPTION_WEIGHTS": "/w.h5", "CLOTHING_CACHE_DIR": "/c"},
            Path("/d"),
            "/w.h5",
            Path("/c"),
        ),
        (
            {"XDG_CACHE_HOME": "/x"},
            Path("clothing-dataset-small"),
            "imagenet",
            Path("/x/clothing-classifier"),
        ),
        (
            {"CLOTHING_DATA_DIR": ""},
            Path("clothing-dataset-small"),
            "imagenet",
            Path("/h/.cache/clothing-classifier"),
        ),
    ],
)
def test_data_weights_and_cache_defaults(
    env: dict[str, str], data: Path, weights: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: Path("/h")))
    assert data_dir_from_env(env) == data
    assert base_weights_from_env(env) == weights
    assert cache_dir_from_env(env) == cache


def test_train_config_from_env_reads_the_same_variables(tmp_path: Path) -> None:
    from train.config import TrainConfig

    env = {
        "CLOTHING_DATA_DIR": str(tmp_path / "d"),
        "XCEPTION_WEIGHTS": "none",
        "CLOTHING_CACHE_DIR": str(tmp_path / "c"),
    }
    config = TrainConfig.from_env(env, epochs=3, image_size=None)
    assert (config.data_dir, config.base_weights, config.cache_dir) == (
        tmp_path / "d",
        "none",
        tmp_path / "c",
    )
    assert config.epochs == 3 and config.image_size == TrainConfig().image_size
    with pytest.raises(ValueError, match=re.escape("Received: epochs=0")):
        TrainConfig.from_env(env, epochs=0)


def test_a_negative_zero_threshold_is_zero() -> None:
    from inference import check_unsure_threshold

    # -0.0 == 0.0, so the sign is what is asserted: an answer echoes "0.0", not "-0.0"
    value = env_fraction({"V": "-0"}, "V")
    assert value is not None and math.copysign(1.0, value) == 1.0
    assert math.copysign(1.0, check_unsure_threshold(-0.0)) == 1.0


def test_a_flag_wins_over_a_bad_env_value() -> None:
    bad = {"INFERENCE_RUNTIME": "bogus", "INFERENCE_THREADS": "many", "UNSURE_THRESHOLD": "2"}
    config = InferenceConfig.from_env(
        bad, runtime="tensorflow", num_threads=2, unsure_threshold=0.5
    )
    assert (config.runtime, config.num_threads, config.unsure_threshold) == ("tensorflow", 2, 0.5)
    with pytest.raises(ValueError, match="INFERENCE_RUNTIME"):
        InferenceConfig.from_env(bad, num_threads=2, unsure_threshold=0.5)
