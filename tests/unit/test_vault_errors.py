import hvac.exceptions as hv
import pytest

from vaultsync.vault.errors import PermissionDenied, clean, translate


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
