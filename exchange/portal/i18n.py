"""The portal's words in Chinese (first) and English: one table, looked up by key.

A page asks ``t("key")``; a key missing in English falls back to Chinese, and a key missing in
both is shown as itself (a test lists the keys the templates use and checks both languages
have them).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["LANGUAGES", "MESSAGES", "Language", "translate"]

Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")

MESSAGES: dict[str, tuple[str, str]] = {
    # key: (中文, English)
    "app": ("政务数据共享交换平台", "Government data exchange"),
    "catalog": ("数据目录", "Catalog"),
    "grants": ("我的授权", "My grants"),
    "inbox": ("待审批", "To decide"),
    "accounts": ("账号管理", "Accounts"),
    "logout": ("退出", "Log out"),
    "login": ("登录", "Log in"),
    "department": ("部门", "Department"),
    "username": ("用户名", "Username"),
    "password": ("密码", "Password"),
    "search": ("搜索", "Search"),
    "search_words": ("名称、字段或编号", "Title, field or id"),
    "provider": ("提供部门", "Provider"),
    "sharing": ("共享类型", "Sharing"),
    "update_cycle": ("更新周期", "Update cycle"),
    "any": ("全部", "Any"),
    "entry": ("目录", "Entry"),
    "title": ("名称", "Title"),
    "fields": ("字段", "Fields"),
    "field": ("字段", "Field"),
    "description": ("说明", "Description"),
    "sensitivity": ("敏感级别", "Sensitivity"),
    "sensitive": ("敏感", "sensitive"),
    "internal": ("内部", "internal"),
    "public": ("公开", "public"),
    "request_grant": ("申请数据", "Request data"),
    "purpose": ("应用场景", "Purpose"),
    "purpose_text": ("用途说明", "What for"),
    "legal_basis": ("依据", "Legal basis"),
    "valid_from": ("开始", "From"),
    "valid_until": ("截止", "Until"),
    "row_filter": ("行过滤（字段前缀）", "Row filter (field prefix)"),
    "submit": ("提交", "Submit"),
    "consumer": ("使用部门", "Consumer"),
    "state": ("状态", "Status"),
    "term": ("期限", "Term"),
    "actions": ("操作", "Actions"),
    "approve": ("同意", "Approve"),
    "reject": ("驳回", "Reject"),
    "reason": ("理由", "Reason"),
    "note": ("备注", "Note"),
    "revoke": ("终止", "End"),
    "renew": ("续期", "Renew"),
    "as_consumer": ("我部门使用的数据", "Data we receive"),
    "as_provider": ("我部门提供的数据", "Data we provide"),
    "nothing": ("无", "None"),
    "expiring": ("即将到期", "Expiring soon"),
    "requested_by": ("申请人", "Requested by"),
    "decided_by": ("审批人", "Decided by"),
    "roles": ("角色", "Roles"),
    "display_name": ("姓名", "Name"),
    "disabled": ("已停用", "Disabled"),
    "disable": ("停用", "Disable"),
    "enable": ("启用", "Enable"),
    "new_account": ("新建账号", "New account"),
    "tokens": ("系统令牌", "API tokens"),
    "new_token": ("新建令牌", "New token"),
    "token_name": ("系统名称", "System"),
    "days": ("有效天数", "Days"),
    "token_once": ("令牌只显示这一次，请立即保存：", "The token is shown only this once:"),
    "expires": ("到期", "Expires"),
    "revoked": ("已吊销", "Revoked"),
    "done": ("已完成", "Done"),
    "language": ("English", "中文"),
    "st_requested": ("待审批", "requested"),
    "st_pending": ("未生效", "not yet valid"),
    "st_active": ("生效中", "active"),
    "st_expired": ("已到期", "expired"),
    "st_rejected": ("已驳回", "rejected"),
    "st_revoked": ("已终止", "ended"),
    "sh_unconditional": ("无条件共享", "unconditional"),
    "sh_conditional": ("有条件共享", "conditional"),
    "sh_none": ("不予共享", "not shared"),
    "error": ("出错了", "Something is wrong"),
    "demands": ("供需对接清单", "Data needs"),
    "notices": ("通知", "Notices"),
    "nk_request_filed": ("新的申请", "request filed"),
    "nk_request_decided": ("申请已审批", "request decided"),
    "nk_grant_expiring": ("授权即将到期", "grant expiring"),
    "nk_grant_ended": ("授权已结束", "grant ended"),
    "nk_demand_posted": ("新的需求", "need posted"),
    "nk_demand_answered": ("需求已答复", "need answered"),
    "found": ("共", "Found"),
    "last_update": ("最近更新", "Last update"),
    "never": ("尚无数据", "no data yet"),
    "page": ("页", "page"),
    "previous": ("上一页", "Previous"),
    "next": ("下一页", "Next"),
    "deliveries": ("交换记录", "Deliveries"),
    "delivered": ("已交换记录数", "Records delivered"),
    "catching_up": ("正在读取审计记录", "still reading the audit trail"),
    "when": ("时间", "When"),
    "records": ("记录数", "Records"),
    "source": ("来源", "Source"),
    "history": ("授权历史", "History"),
    "event": ("事件", "Event"),
    "who": ("操作人", "Who"),
    "new_demand": ("发布需求", "Post a need"),
    "demand_title": ("所需数据", "Data needed"),
    "holder": ("可能提供部门", "Believed holder"),
    "unknown": ("不清楚", "Not known"),
    "age": ("已发布", "Age"),
    "days_old": ("天", "days"),
    "due": ("预计", "due"),
    "dm_open": ("待答复", "open"),
    "dm_matched": ("已有目录", "matched"),
    "dm_accepted": ("纳入编目", "accepted"),
    "dm_declined": ("不予提供", "declined"),
}


def translate(key: str, language: Language) -> str:
    pair = MESSAGES.get(key)
    if pair is None:
        return key
    return pair[1] if language == "en" and pair[1] else pair[0]
