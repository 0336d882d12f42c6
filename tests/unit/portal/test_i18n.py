"""Every word the pages show is in both languages (portal/i18n.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from exchange.catalog.model import FieldSpec
from exchange.grants.model import Status
from exchange.portal.i18n import MESSAGES, translate
from exchange.portal.model import DemandState, NoticeKind

TEMPLATES = Path(__file__).parents[3] / "exchange" / "portal" / "templates"


def test_every_key_the_templates_use_is_in_both_languages() -> None:
    used = set()
    for page in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"t\('([a-z_]+)'\)", page.read_text(encoding="utf-8")))
    # Keys made from values: t('st_' ~ status), t('sh_' ~ sharing), t(f.sensitivity).
    used |= {f"st_{s}" for s in get_args(Status)}
    used |= {"sh_unconditional", "sh_conditional", "sh_none"}
    used |= {f"dm_{s}" for s in get_args(DemandState)}
    used |= {f"nk_{k}" for k in get_args(NoticeKind)}
    used |= set(get_args(FieldSpec.model_fields["sensitivity"].annotation))
    missing = sorted(k for k in used if k not in MESSAGES or not all(MESSAGES[k]))
    assert not missing, f"not in both languages: {missing}"
    assert len(used) > 40


def test_english_falls_back_to_chinese_and_unknown_keys_show_themselves() -> None:
    assert translate("catalog", "en") == "Catalog"
    assert translate("catalog", "zh") == "数据目录"
    assert translate("no_such_key", "en") == "no_such_key"
