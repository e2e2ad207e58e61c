"""business.yaml checked like a flow, `orchestrator validate` on a businesses directory, and a
business refused on its own (a missing secret) while the others serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.businesses.loader import load_business, load_businesses_dir
from orchestrator.businesses.registry import BusinessRegistry
from orchestrator.cli.main import main as cli
from orchestrator.errors import FlowError
from orchestrator.settings import AppSettings

from .conftest import LUNA, SOL, secrets_env, write_business


def _problems(folder: Path) -> list[str]:
    with pytest.raises(FlowError) as caught:
        load_business(folder)
    return [d.format() for d in caught.value.diagnostics]


def _edit(folder: Path, old: str, new: str) -> None:
    text = (folder / "business.yaml").read_text()
    assert old in text, old
    (folder / "business.yaml").write_text(text.replace(old, new))


def test_an_unknown_key_is_refused_at_its_line_with_the_keys_it_could_be(businesses_dir: Path) -> None:
    folder = businesses_dir / "luna_hair"
    _edit(folder, "retention_days: 30", "retention_dayz: 30")
    [problem] = _problems(folder)
    assert problem.startswith(f"{folder / 'business.yaml'}:15:1: unknown key 'retention_dayz' in business.yaml")
    assert "did you mean 'retention_days'?" in problem


def test_a_literal_secret_is_refused_with_the_reference_to_write(businesses_dir: Path) -> None:
    folder = businesses_dir / "sol_dental"
    _edit(folder, "auth_token: env:SOL_TOKEN", "auth_token: abc123secret")
    [problem] = _problems(folder)
    assert ":9:50:" in problem and "holds a secret written out" in problem and "env:" in problem
    assert "abc123secret" not in problem


def test_bad_numbers_routes_and_flows_are_reported_together(businesses_dir: Path) -> None:
    folder = businesses_dir / "luna_hair"
    _edit(folder, "default_flow: intake", 'default_flow: intak\nroutes: {"+34911111111": intake}')
    problems = _problems(folder)
    assert any("flow 'intak' is not in" in p and "did you mean 'intake'?" in p for p in problems)
    assert any("the route '+34911111111' is not one of this business's numbers" in p for p in problems)
    _edit(folder, f'twilio: ["{LUNA}"]', 'twilio: ["0034 91"]')
    assert any("E.164" in p for p in _problems(folder))


def test_a_number_of_two_businesses_refuses_the_second(businesses_dir: Path) -> None:
    _edit(businesses_dir / "sol_dental", f'twilio: ["{SOL}"]', f'twilio: ["{LUNA}"]')
    found, problems = load_businesses_dir(businesses_dir)
    assert list(found) == ["luna_hair"]
    [why] = problems.values()
    assert "belongs to business 'luna_hair' already" in str(why)


def test_a_missing_secret_refuses_that_business_by_name_and_the_others_serve(businesses_dir: Path) -> None:
    env = secrets_env()
    del env["SOL_WA_SECRET"]
    registry = BusinessRegistry(AppSettings(businesses_dir=str(businesses_dir), environ=env))
    assert registry.prepare() == ["luna_hair"]
    [why] = registry.refused.values()
    assert "business 'sol_dental'" in why and "SOL_WA_SECRET is not set" in why


def test_validate_checks_a_businesses_directory(businesses_dir: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in secrets_env().items():
        monkeypatch.setenv(name, value)
    assert cli(["validate", str(businesses_dir)]) == 0
    assert "all valid" in capsys.readouterr().out
    monkeypatch.delenv("LUNA_TOKEN")
    assert cli(["validate", str(businesses_dir / "luna_hair")]) == 0  # a warning: CI has no secrets
    out = capsys.readouterr().out
    assert "warning: credentials.twilio.auth_token" in out and "LUNA_TOKEN" in out
    assert cli(["validate", "--strict", str(businesses_dir)]) == 1
    capsys.readouterr()
    (businesses_dir / "sol_dental" / "flows" / "intake.yaml").write_text("flow: intake\nstart: nowhere\nstates: {}\n")
    assert cli(["validate", str(businesses_dir)]) == 1
    assert "sol_dental/flows/intake.yaml:" in capsys.readouterr().out


def test_the_example_businesses_directory_is_valid(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "businesses"
    found, problems = load_businesses_dir(root)
    assert not problems and len(found) >= 2
    assert cli(["validate", str(root)]) == 0, capsys.readouterr().out


def test_write_business_helper_makes_valid_folders(tmp_path: Path) -> None:
    write_business(tmp_path, "one_biz", "+34910000009", "109876543210009", "LUNA", "One")
    assert load_business(tmp_path / "one_biz").id == "one_biz"


async def test_businesses_added_edited_and_removed_while_serving_a_broken_edit_keeps_the_last_good(
        businesses_dir: Path, twilio_fake, graph_fake) -> None:  # type: ignore[no-untyped-def]
    from litestar.testing import AsyncTestClient

    from orchestrator.web.app import create_app

    from .conftest import make_settings, sms

    async with AsyncTestClient(create_app(make_settings(businesses_dir, twilio_fake, graph_fake))) as client:
        registry = client.app.state.businesses
        assert "Welcome to Sol Dental" in (await sms(client, "hi", to=SOL)).text
        # a broken edit: logged, the last good configuration keeps serving (and its conversation)
        _edit(businesses_dir / "sol_dental", "retention_days: 30", "retention_days: [")
        refused = await registry.reload()
        assert any("sol_dental" in folder for folder in refused)
        assert "Thanks Bea, Sol Dental" in (await sms(client, "Bea", to=SOL)).text
        # a good edit: a new flow title, served to new conversations
        _edit(businesses_dir / "sol_dental", "retention_days: [", "retention_days: 7")
        (businesses_dir / "sol_dental" / "flows" / "intake.yaml").write_text(
            (businesses_dir / "sol_dental" / "flows" / "intake.yaml").read_text().replace("Sol Dental", "Sol Clinic"))
        assert await registry.reload() == {}
        assert registry.get("sol_dental").settings.retention_days == 7
        assert "Welcome to Sol Clinic" in (await sms(client, "hi", to=SOL, sender="+34600555666")).text
        # added
        write_business(businesses_dir, "mar_spa", "+34910000003", "109876543210003", "LUNA", "Mar Spa")
        refused = await registry.reload()
        assert any("mar_spa" in f and "token" in why for f, why in refused.items())  # luna's admin tokens reused
        text = (businesses_dir / "mar_spa" / "business.yaml").read_text()
        (businesses_dir / "mar_spa" / "business.yaml").write_text(text.split("admins:")[0] + "retention_days: 30\n")
        assert await registry.reload() == {}
        assert "Welcome to Mar Spa" in (await sms(client, "hi", to="+34910000003",
                                                  token=secrets_env()["LUNA_TOKEN"])).text
        # removed: its number is not served any more
        import shutil

        shutil.rmtree(businesses_dir / "mar_spa")
        await registry.reload()
        assert registry.ids() == ["luna_hair", "sol_dental"]
        assert (await sms(client, "hi", to="+34910000003", token=secrets_env()["LUNA_TOKEN"])).status_code == 404


def test_a_google_calendar_business_gets_its_own_calendar_id_and_credentials(businesses_dir: Path,
                                                                            tmp_path: Path) -> None:
    key = tmp_path / "sol-service-account.json"
    key.write_text("{}")
    _edit(businesses_dir / "sol_dental", "calendar: {kind: embedded}",
          f"calendar: {{kind: google, calendar_id: env:SOL_CAL, credentials: 'file:{key}'}}")
    env = {**secrets_env(), "SOL_CAL": "sol@group.calendar.google.com", "GOOGLE_CALENDAR_ID": "deployment@x"}
    registry = BusinessRegistry(AppSettings(businesses_dir=str(businesses_dir), environ=env))
    found, _ = load_businesses_dir(businesses_dir)
    sol = registry.business_settings(found["sol_dental"]).plugin_environ()
    luna = registry.business_settings(found["luna_hair"]).plugin_environ()
    assert sol["GOOGLE_CALENDAR_ID"] == "sol@group.calendar.google.com"
    assert sol["GOOGLE_APPLICATION_CREDENTIALS"] == str(key)
    assert "GOOGLE_CALENDAR_ID" not in luna  # the deployment's calendar is nobody's here
    assert luna["ORCHESTRATOR_CALENDAR_DB"] != sol["ORCHESTRATOR_CALENDAR_DB"]


async def test_a_rotated_secret_file_rebuilds_its_business(businesses_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "sol-token"
    secret.write_text("first-token-0000000000\n")
    _edit(businesses_dir / "sol_dental", "auth_token: env:SOL_TOKEN", f"auth_token: 'file:{secret}'")
    registry = BusinessRegistry(AppSettings(businesses_dir=str(businesses_dir), environ=secrets_env()))
    registry.prepare()
    await registry.start()
    try:
        assert registry.get("sol_dental").settings.twilio_auth_token == "first-token-0000000000"
        assert await registry.check() is None  # nothing changed
        secret.write_text("second-token-000000000000\n")
        assert await registry.check() == {}
        assert registry.get("sol_dental").settings.twilio_auth_token == "second-token-000000000000"
        secret.unlink()  # gone: refused, the last good one keeps serving
        refused = await registry.check()
        assert refused and "cannot be read" in next(iter(refused.values()))
        assert registry.get("sol_dental").settings.twilio_auth_token == "second-token-000000000000"
    finally:
        await registry.close()
