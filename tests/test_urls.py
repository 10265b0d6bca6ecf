"""Which service strings are ours: real CodeArtifact shapes and hostile look-alikes."""

from __future__ import annotations

import pytest

from menda_keyring.urls import RegistryTarget, parse_codeartifact_service

HOST = "menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com"
OURS = RegistryTarget("menda-private", "058264169513", "eu-west-1")
VPCE = "vpce-0dc4daf7fca331ed6-et36qa1d.d.codeartifact.us-west-2.vpce.amazonaws.com"


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (f"https://{HOST}/pypi/menda-plugins/simple/", OURS),
        (f"https://aws@{HOST}/pypi/menda-plugins/simple/", OURS),
        (f"https://aws:old-token@{HOST}/pypi/menda-plugins/simple/", OURS),
        (f"http://{HOST}/pypi/menda-plugins/simple/", OURS),
        (f"https://{HOST}", OURS),
        (f"https://{HOST}:443", OURS),
        (f"https://{HOST}/", OURS),
        (f"https://{HOST}/pypi/other-repo/simple/menda-hello/", OURS),
        (f"https://{HOST}?x=1", OURS),
        (HOST, OURS),
        (f"{HOST}:443", OURS),
        (f"https://{HOST.upper()}/pypi/menda-plugins/simple/", OURS),
        (f"HTTPS://{HOST}/", OURS),
        (f"https://{HOST}./pypi/menda-plugins/simple/", OURS),
        (f"{HOST}.", OURS),
        (
            "https://my-domain-111122223333.d.codeartifact.us-gov-west-1.amazonaws.com/pypi/r/simple/",
            RegistryTarget("my-domain", "111122223333", "us-gov-west-1"),
        ),
        (
            # The domain is everything before the last -{owner}.
            "https://a-1-222233334444.d.codeartifact.eu-west-1.amazonaws.com/",
            RegistryTarget("a-1", "222233334444", "eu-west-1"),
        ),
        (
            f"https://{VPCE}/pypi/d/my-domain-111122223333/my-repo/simple/",
            RegistryTarget("my-domain", "111122223333", "us-west-2"),
        ),
        (
            f"https://aws@{VPCE.upper()}/pypi/d/my-domain-111122223333/my-repo",
            RegistryTarget("my-domain", "111122223333", "us-west-2"),
        ),
    ],
)
def test_codeartifact_shapes_are_ours(service: str, expected: RegistryTarget) -> None:
    assert parse_codeartifact_service(service) == expected


@pytest.mark.parametrize(
    "service",
    [
        "https://pypi.org/simple/",
        "pypi.org",
        "",
        "https://",
        "x.d.codeartifact.eu-west-1.amazonaws.com.evil.com",
        f"https://{HOST}.evil.com/pypi/menda-plugins/simple/",
        f"evil.com/{HOST}/pypi/menda-plugins/simple/",
        f"https://evil.com/{HOST}/",
        f"https://{HOST}@evil.com/",
        f"https://aws:x@{HOST}@evil.com/pypi/",
        f"https://evil.com\\@{HOST}/",
        f"https://evil.com#@{HOST}/",
        f"https://evil.com?@{HOST}/",
        f"ftp://{HOST}/",
        f"file://{HOST}/",
        f"https://{HOST}:notaport/",
        f"https://{HOST}:99999999/",
        f"https://{HOST} /",
        f"https://{HOST}%2eevil.com/",
        f"https://{HOST}\n/",
        # Owner must be exactly 12 ASCII digits; domain rules apply.
        "https://menda-private-05826416951.d.codeartifact.eu-west-1.amazonaws.com/",
        "https://menda-private-0582641695133.d.codeartifact.eu-west-1.amazonaws.com/",
        "https://menda-private-\u0660\u0665\u0668\u0662\u0666\u0664\u0661\u0666\u0669\u0665\u0661\u0663"
        ".d.codeartifact.eu-west-1.amazonaws.com/",
        "https://-bad-058264169513.d.codeartifact.eu-west-1.amazonaws.com/",
        "https://bad--058264169513.d.codeartifact.eu-west-1.amazonaws.com/",
        "https://Ü-058264169513.d.codeartifact.eu-west-1.amazonaws.com/",
        "https://a" + "b" * 60 + "-058264169513.d.codeartifact.eu-west-1.amazonaws.com/",
        "https://menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.co/",
        "https://menda-private-058264169513.d.codeartifact.amazonaws.com/",
        "https://[::1]/",
        # VPC endpoints need the domain in the path.
        f"https://{VPCE}/",
        f"https://{VPCE}/pypi/menda-plugins/simple/",
        f"https://{VPCE}/pypi/d/not_a_domain/repo/",
        f"https://{VPCE}.evil.com/pypi/d/my-domain-111122223333/my-repo/",
        f"https://{VPCE}\\pypi/d/my-domain-111122223333/my-repo/",
        "https://vpce-x.d.codeartifact.us-west-2.vpce.amazonaws.com.evil.com/pypi/d/a-111122223333/r/",
    ],
)
def test_everything_else_is_not_ours(service: str) -> None:
    assert parse_codeartifact_service(service) is None


@pytest.mark.parametrize("service", [None, 42, b"bytes", "x" * 5000])
def test_non_strings_and_huge_strings_are_not_ours(service: object) -> None:
    assert parse_codeartifact_service(service) is None
