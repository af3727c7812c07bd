"""Settings: TEMPERING_* variables, flags over them, defaults under the state directory."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from service.core.settings import FIELDS, Settings, SettingsError, add_settings_arguments


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    return parser.parse_args(argv)


def test_every_setting_has_one_variable_and_one_flag() -> None:
    assert {f.name for f in FIELDS} == {f.name for f in dataclasses.fields(Settings)}
    assert all(f.env.startswith("TEMPERING_") for f in FIELDS)


def test_defaults_live_under_the_state_dir(tmp_path: Path) -> None:
    settings = Settings.load({"TEMPERING_STATE_DIR": str(tmp_path)})

    assert settings.artifact_dir == tmp_path / "artifacts"
    assert settings.database_url == f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    assert settings.uses_local_broker
    assert not settings.allow_trusted_formats
    assert settings.visibility_timeout == 6 * 3600


def test_the_default_queue_names_no_device_and_a_set_one_is_kept(tmp_path: Path) -> None:
    default = Settings.load({"TEMPERING_STATE_DIR": str(tmp_path)})
    explicit = Settings.load(
        {"TEMPERING_STATE_DIR": str(tmp_path), "TEMPERING_QUEUE": "tempering.gpu"}
    )

    assert default.queue == "tempering.jobs"
    assert explicit.queue == "tempering.gpu"


def test_flags_override_the_environment(tmp_path: Path) -> None:
    environ = {
        "TEMPERING_STATE_DIR": str(tmp_path),
        "TEMPERING_BROKER_URL": "redis://127.0.0.1:6379/0",
        "TEMPERING_MAX_UPLOAD_BYTES": "2G",
        "TEMPERING_ALLOW_TRUSTED_FORMATS": "true",
    }
    settings = Settings.load(environ, parse(["--max-upload-bytes", "512M"]))

    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert not settings.uses_local_broker
    assert settings.max_upload_bytes == 512 * 1024 * 1024
    assert settings.allow_trusted_formats


def test_settings_survive_the_trip_through_the_environment(tmp_path: Path) -> None:
    settings = Settings.load({"TEMPERING_STATE_DIR": str(tmp_path), "TEMPERING_QUEUE": "q1"})

    assert Settings.load(settings.to_env()) == settings


def test_visibility_timeout_must_outlast_the_longest_job(tmp_path: Path) -> None:
    environ = {
        "TEMPERING_STATE_DIR": str(tmp_path),
        "TEMPERING_VISIBILITY_TIMEOUT": "3600",
        "TEMPERING_JOB_TIME_LIMIT": "7200",
    }
    with pytest.raises(SettingsError, match="TEMPERING_VISIBILITY_TIMEOUT"):
        Settings.load(environ)


def test_malformed_value_names_its_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="TEMPERING_GRPC_THREADS"):
        Settings.load({"TEMPERING_STATE_DIR": str(tmp_path), "TEMPERING_GRPC_THREADS": "many"})


def test_the_inline_weight_limit_may_be_lowered_for_small_models(tmp_path: Path) -> None:
    settings = Settings.load(
        {"TEMPERING_STATE_DIR": str(tmp_path), "TEMPERING_INLINE_WEIGHT_LIMIT": "4M"}
    )

    assert settings.inline_weight_limit == 4 * 1024 * 1024
    assert Settings.load(settings.to_env()) == settings


def test_the_inline_weight_limit_is_never_raised_past_what_protobuf_holds(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="TEMPERING_INLINE_WEIGHT_LIMIT must be positive and"):
        Settings.load({"TEMPERING_STATE_DIR": str(tmp_path), "TEMPERING_INLINE_WEIGHT_LIMIT": "3G"})
