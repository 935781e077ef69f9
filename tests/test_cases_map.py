"""The shipped test-case table: 54 cases, every error case mapped to its target service."""

from __future__ import annotations

from pathlib import Path

import pytest

from loglead_lo2 import SERVICES
from loglead_lo2.cases import error_cases, target_service, target_service_map, test_cases

REFERENCE = Path(__file__).resolve().parents[2] / "shared/lo2-reference/test_cases.txt"


def test_every_error_case_has_a_target_service() -> None:
    cases = test_cases()
    assert len(cases) == 54 and "correct" in cases
    mapping = target_service_map()
    assert sorted(mapping) == error_cases() and len(mapping) == 53
    assert set(mapping.values()) <= set(SERVICES) - {"key"}
    assert target_service("correct") is None and target_service("nope") is None


@pytest.mark.parametrize(
    "case, service",
    [
        ("access_token_client_secret_wrong_401", "token"),
        ("code_verifier_missing_pkce_400", "token"),
        ("code_challenge_too_short_pkce_400", "code"),
        ("authorization_code_invalid_password_401", "code"),
        ("get_token_page_400_no_page", "refresh-token"),
        ("update_password_404_user_not_found", "user"),
        ("register_service_404_no_user", "service"),
        ("get_client_page_400_no_page", "client"),
    ],
)
def test_targets_follow_the_reference_table(case: str, service: str) -> None:
    assert target_service(case) == service


def test_prefix_rules_of_the_reference_hold() -> None:
    for case, service in target_service_map().items():
        if case.startswith(("access_token_", "code_verifier_", "verification_failed")) or (
            case == "invalid_code_verifier_format_PKCE_400"
        ):
            assert service == "token", case
        elif case.startswith(("authorization_code_", "code_challenge_", "invalid_code_challenge")):
            assert service == "code", case
        elif case in {"get_token_404", "delete_token_404", "get_token_page_400_no_page"}:
            assert service == "refresh-token", case
        else:
            noun = case.split("_")[1]
            expected = {"password": "user"}.get(noun, noun)
            assert service == expected, case


def test_reference_list_matches_when_present() -> None:
    if not REFERENCE.is_file():
        pytest.skip("shared/lo2-reference not present")
    names = [n for n in REFERENCE.read_text().split() if n]
    assert sorted(names) == sorted(test_cases())
