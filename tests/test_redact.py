"""Secret redaction."""

from __future__ import annotations

import pytest

from store_worker.redact import redact

JWT = ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
       "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc+/=\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize(
    ("text", "expected", "kinds"),
    [
        ("key sk-abcdefghijklmnopqrstuvwxyz012345 ok", "key [REDACTED:openai_key] ok",
         ["openai_key"]),
        ("sk-proj-abcdefghijklmnopqrstuvwxyz0123", "[REDACTED:openai_key]", ["openai_key"]),
        ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz", "[REDACTED:anthropic_key]",
         ["anthropic_key"]),
        ("GITHUB_TOKEN=ghp_" + "a1" * 18, "GITHUB_TOKEN=[REDACTED:github_token]",
         ["github_token"]),
        ("github_pat_" + "A" * 40, "[REDACTED:github_token]", ["github_token"]),
        ("aws AKIAIOSFODNN7EXAMPLE here", "aws [REDACTED:aws_access_key] here",
         ["aws_access_key"]),
        ("xoxb-123456789012-abcdefghij", "[REDACTED:slack_token]", ["slack_token"]),
        ("AIza" + "B" * 35, "[REDACTED:google_api_key]", ["google_api_key"]),
        ("sk_live_" + "c" * 24, "[REDACTED:stripe_key]", ["stripe_key"]),
        ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz.123",
         "Authorization: Bearer [REDACTED:bearer_token]", ["bearer_token"]),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==",
         "Authorization: Basic [REDACTED:basic_auth]", ["basic_auth"]),
        (f"jwt {JWT} done", "jwt [REDACTED:jwt] done", ["jwt"]),
        (f"before\n{PEM}\nafter", "before\n[REDACTED:private_key]\nafter", ["private_key"]),
        ("postgres://admin:s3cr3t@db.example.com:5432/app",
         "postgres://admin:[REDACTED]@db.example.com:5432/app", ["url_password"]),
        ("api_key=abc123def456", "api_key=[REDACTED:secret]", ["secret"]),
        ("token: 1234567", "token: [REDACTED:secret]", ["secret"]),
        ("password=hunter2", "password=[REDACTED:secret]", ["secret"]),
        ('password: "correct horse battery"', 'password: "[REDACTED:secret]"', ["secret"]),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
         "AWS_SECRET_ACCESS_KEY=[REDACTED:secret]", ["secret"]),
        # found where a secret may start anywhere in a run (the rules try only the run's start)
        (f"x-{JWT}", "x-[REDACTED:jwt]", ["jwt"]),
        ("jdbc:postgresql://admin:s3cr3t@db:5432/app",
         "jdbc:postgresql://admin:[REDACTED]@db:5432/app", ["url_password"]),
        ("a.b-c+postgres://u:s3cr3t@db", "a.b-c+postgres://u:[REDACTED]@db", ["url_password"]),
        ("db.password=hunter22", "db.password=[REDACTED:secret]", ["secret"]),
        ("token=token=token=abc123", "token=[REDACTED:secret]", ["secret"]),
        ("token=abc.password= realvalue123", "token=abc.password= [REDACTED:secret]", ["secret"]),
        ("pwd=abcdef token=abc123", "pwd=abcdef token=[REDACTED:secret]", ["secret"]),
        # a second secret right after another's value (the key-name prefix rule missed it)
        ("token=abc12345\u00e9password=xyz12345",
         "token=[REDACTED:secret]\u00e9password=[REDACTED:secret]", ["secret"]),
    ],
)
def test_secrets_are_replaced(text, expected, kinds):
    assert redact(text) == (expected, kinds)
    assert redact(expected) == (expected, [])  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "tokenizer = Tokenizer.from_file(path)",
        "token = get_token()",
        "max_tokens = 1000000",
        "Bearer tokens are used widely",
        "basic functionality works",
        "the secret = os.environ",
        "https://user@host/path has no password",
        "see https://example.com:8080/a/b",
        "'); DROP TABLE memories; --",
        "monkey business with keys and tokens",
        "token=token=token=token=(",
        "eyJ-eyJ-eyJ-eyJ-eyJ-eyJ.abc",
        "",
    ],
)
def test_ordinary_text_is_left_alone(text):
    assert redact(text) == (text, [])


def test_several_kinds_are_listed_once_in_order():
    text = "sk-" + "a" * 30 + " and sk-" + "b" * 30 + " and password=abc12345"
    out, kinds = redact(text)
    assert kinds == ["openai_key", "secret"]
    assert out == "[REDACTED:openai_key] and [REDACTED:openai_key] and password=[REDACTED:secret]"
