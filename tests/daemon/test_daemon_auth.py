"""The token file and the bearer metadata (fpgacspd.auth): what is accepted, and every way a file is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from fpgacspd.auth import Role, TokenFileError, TokenTable, bearer_token

A, B = "a" * 16 + "-solve", "b" * 16 + "-admin"


def table(tmp_path: Path, text: str) -> TokenTable:
    path = tmp_path / "tokens"
    path.write_text(text)
    return TokenTable.load(path)


def test_lines_give_tokens_their_roles_and_comments_and_blanks_are_skipped(tmp_path: Path) -> None:
    t = table(tmp_path, f"# comment\n\n{A} solve\n  {B}\tadmin  # trailing comment\n")
    assert t.role_of(A) is Role.SOLVE and t.role_of(B) is Role.ADMIN
    assert t.role_of("c" * 20) is None and t.role_of("") is None and t.role_of(A[:-1]) is None
    assert all(A not in repr(e) and B not in repr(e) for e in t.entries)  # only digests are kept


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{A}\n", r":1: expected 'TOKEN ROLE', got 1 fields"),
        (f"# x\n{A} solve extra\n", r":2: expected 'TOKEN ROLE', got 3 fields"),
        ("short solve\n", r":1: a token must have at least 16 characters"),
        (f"{A} root\n", r":1: unknown role 'root' \(known: solve, admin\)"),
        ("# nothing\n\n", r"holds no token \(every call would be refused\)"),
    ],
)
def test_a_file_that_cannot_be_used_is_refused_naming_the_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TokenFileError, match=rf"server.auth_tokens: .*{message}"):
        table(tmp_path, text)


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match=r"cannot read .*nowhere \(No such file"):
        TokenTable.load(tmp_path / "nowhere")


def test_the_bearer_token_is_read_from_the_authorization_metadata() -> None:
    assert bearer_token((("authorization", f"Bearer {A}"),)) == A
    assert bearer_token((("x-other", "1"), ("authorization", f"bearer {A}"))) == A  # the scheme is case-blind
    assert bearer_token((("authorization", f"Basic {A}"),)) is None
    assert bearer_token(()) is None and bearer_token(None) is None
