"""Accounts from Python: an account's apps share its monthly requests and its
``max_apps``; every account error is its own class."""

from __future__ import annotations

import pathlib

import pytest

import corral
from conftest import HELLO, config, tier


def test_an_accounts_apps_share_its_quota_and_its_app_limit(tmp_path: pathlib.Path) -> None:
    tiers = {
        "team": tier(requests_per_month=3, max_apps=2),
        "solo": tier(max_apps=1),
        "test": tier(),
    }
    with corral.Platform(data_dir=tmp_path, config=config(tiers=tiers)) as p:
        info = p.create_account("acme", "team")
        assert (info["name"], info["tier"], info["apps"], info["max_apps"]) == (
            "acme",
            "team",
            [],
            2,
        )
        with pytest.raises(corral.AccountExists) as exists:
            p.create_account("acme", "team")
        assert (exists.value.status, exists.value.account) == (409, "acme")

        assert p.deploy("blog", HELLO, account="acme")["tier"] == "team"
        p.deploy("shop", HELLO, account="acme")
        with pytest.raises(corral.AppLimit) as full:
            p.deploy("third", HELLO, account="acme")
        assert (full.value.status, full.value.code) == (403, "app_limit")
        assert (full.value.account, full.value.apps, full.value.max_apps) == ("acme", 2, 2)
        with pytest.raises(ValueError):
            p.deploy("both", HELLO, tier="team", account="acme")

        # Three requests for the account, whichever app serves them.
        p.invoke("blog")
        p.invoke("shop")
        p.invoke("blog")
        with pytest.raises(corral.QuotaExceeded):
            p.invoke("shop")
        report = p.account_usage("acme")
        assert (report["usage"]["tenant"], report["usage"]["requests"]) == ("acme", 3)
        assert report["requests_quota"] == 3
        assert p.usage("blog")["usage"]["requests"] == 2

        with pytest.raises(corral.AccountTier):
            p.set_tier("blog", "solo")
        with pytest.raises(corral.AccountNotEmpty) as not_empty:
            p.delete_account("acme")
        assert not_empty.value.apps == 2

        p.create_account("mine", "solo")
        moved = p.move_app("blog", "mine")
        assert (moved["account"], moved["tier"]) == ("mine", "solo")
        with pytest.raises(corral.AppLimit):
            p.move_app("shop", "mine")
        p.set_account_tier("acme", "test")
        assert p.account("acme")["tier"] == "test"  # type: ignore[index]
        assert p.invoke("shop").status == 200
        assert p.account("nobody") is None
        with pytest.raises(corral.AccountNotFound):
            p.deploy("x", HELLO, account="nobody")
        assert [a["name"] for a in p.accounts()] == ["acme", "mine"]
