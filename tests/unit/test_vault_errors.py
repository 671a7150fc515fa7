import http.client
import ssl

import hvac.exceptions as hv
import pytest

from vaultsync.vault.errors import PermissionDenied, VaultUnavailable, clean, translate


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("1 error occurred:\n\t* permission denied\n\n", "permission denied"),
        ("2 errors occurred:\n\t* first\n\t* second\n\n", "first; second"),
        ("plain message\n", "plain message"),
        (
            'no handler for route "x". route entry not found.',
            'no handler for route "x". route entry not found.',
        ),
    ],
)
def test_vault_messages_lose_their_multierror_wrapping(raw: str, shown: str) -> None:
    assert clean(raw) == shown


def test_translated_errors_carry_the_clean_message() -> None:
    error = translate(
        hv.Forbidden(errors=["1 error occurred:\n\t* permission denied\n\n"]), "read x"
    )
    assert isinstance(error, PermissionDenied)
    assert str(error) == "read x: permission denied"


@pytest.mark.parametrize(
    ("raised", "shown"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "ConnectionRefusedError"),
        (TimeoutError("timed out"), "TimeoutError"),
        (http.client.RemoteDisconnected("closed"), "RemoteDisconnected"),
        (http.client.IncompleteRead(b"partial"), "IncompleteRead"),
    ],
)
def test_transport_failures_are_vault_unavailable(raised: Exception, shown: str) -> None:
    error = translate(raised, "read x")
    assert isinstance(error, VaultUnavailable)
    assert str(error) == f"read x: cannot reach Vault ({shown})"


def test_a_refused_certificate_says_why_and_nothing_of_the_answer() -> None:
    refused = ssl.SSLCertVerificationError(1, "certificate verify failed")
    refused.reason = "CERTIFICATE_VERIFY_FAILED"
    error = translate(refused, "read x")
    assert isinstance(error, VaultUnavailable)
    assert str(error) == "read x: cannot reach Vault (SSLError: CERTIFICATE_VERIFY_FAILED)"
