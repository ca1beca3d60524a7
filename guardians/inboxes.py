"""Inboxes as index ranges: who may decide each work item, kept as rows beside the item.

A work item names its deciders in JSON lists (backups, escalated_to), which no index reaches: an
inbox read that way loads every pending item and filters in Python (136 s and 5.6 GB at a million
items). Here every decider is a row (item, person, rule, the item's status) with an index on
(person, status, item), so one person's page of pending items is a range scan of that index,
whatever the number of items, and a later page starts after the last id seen (keyset paging: no
OFFSET, which would read every row it skips).

`record` rewrites an item's rows in the transaction that changes the item — when it is queued,
decided, handed to the next sign-off stage or escalated — so the rows never disagree with it.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, and_, delete, distinct, func, insert, or_, union
from sqlmodel import Session, col, select

from .identity import person_key
from .models import DecideRule, ItemDecider, ItemStatus, WorkItem

# A person's own rules first: someone who is both the owner and a backup decides as the owner.
_PRECEDENCE = (DecideRule.OWNER, DecideRule.BACKUP, DecideRule.DELEGATE, DecideRule.ESCALATION)


def deciders_of(item: WorkItem) -> set[tuple[str, str]]:
    """(person key, rule) of everyone who may decide `item` by its own fields (delegates aside:
    delegations change without the item, so an inbox looks them up by the owner's row)."""
    rows = {(person_key(item.guardian), DecideRule.OWNER.value)}
    rows |= {(person_key(b), DecideRule.BACKUP.value) for b in item.backups}
    rows |= {(person_key(e), DecideRule.ESCALATION.value) for e in item.escalated_to}
    return rows


def record(session: Session, item: WorkItem) -> None:
    """Make the item's decider rows say what the item says (call after a flush gave it an id)."""
    assert item.id is not None
    session.exec(delete(ItemDecider).where(col(ItemDecider.item_id) == item.id))
    rows = [
        {"item_id": item.id, "person": person, "rule": rule, "status": item.status}
        for person, rule in sorted(deciders_of(item))
    ]
    session.exec(insert(ItemDecider), params=rows)


def page(
    session: Session,
    person: str,
    *,
    covering: Iterable[str] = (),
    scenario: str | None = None,
    pending_only: bool = True,
    after: int = 0,
    limit: int = 50,
) -> list[tuple[int, str, str | None]]:
    """The next `limit` pending items `person` may decide, by id after `after`: (item id, rule,
    the guardian who delegated it or None). `covering` are the guardians whose items `person`
    decides as their delegate now (delegation.delegated_to). With `pending_only` False, decided
    items too (the range is then the person's rows in every status, sorted).

    One index range per person asked about (the person, and each guardian covered as owner),
    each cut at `limit`, merged, and the rules of just those items, in one statement: a decision
    or sign-off committed meanwhile cannot leave an item found without the row that found it
    (two statements would each see their own moment on PostgreSQL). A scenario filter reads the
    person's items until it has a page."""
    me = person_key(person)
    owners = {person_key(g): g for g in covering}
    ranges = [(me, None)] + [(key, DecideRule.OWNER.value) for key in owners if key != me]
    selects = []
    for who, rule in ranges:
        query = select(ItemDecider.item_id).where(ItemDecider.person == who, col(ItemDecider.item_id) > after)
        if pending_only:
            query = query.where(ItemDecider.status == ItemStatus.PENDING.value)
        if rule is not None:
            query = query.where(ItemDecider.rule == rule)
        if scenario is not None:
            query = query.where(ItemDecider.item_id == WorkItem.id, WorkItem.scenario_id == scenario)
        ranged = query.distinct().order_by(col(ItemDecider.item_id)).limit(limit)  # a person may hold two rules
        selects.append(select(ranged.subquery().c.item_id))
    merged = union(*selects).subquery() if len(selects) > 1 else selects[0].subquery()
    ids = select(merged.c.item_id).order_by(merged.c.item_id).limit(limit)
    rows = session.exec(
        select(ItemDecider.item_id, ItemDecider.person, ItemDecider.rule).where(
            col(ItemDecider.item_id).in_(ids), col(ItemDecider.person).in_([me, *owners])
        )
    ).all()
    found: dict[int, set[tuple[str, str]]] = {}
    for item_id, who, rule in rows:
        found.setdefault(item_id, set()).add((who, rule))
    return [_why(found[item_id], me, owners, item_id) for item_id in sorted(found)]


def _why(rows: set[tuple[str, str]], me: str, owners: dict[str, str], item_id: int) -> tuple[int, str, str | None]:
    for rule in _PRECEDENCE:
        if rule == DecideRule.DELEGATE:
            for who, r in sorted(rows):
                if r == DecideRule.OWNER and who != me and who in owners:
                    return item_id, rule.value, owners[who]
        elif (me, rule.value) in rows:
            return item_id, rule.value, None
    raise AssertionError(f"item {item_id} was found for a person with no rule on it")  # the query found it by one


def _theirs(person: str, covering: Iterable[str]) -> ColumnElement[bool]:
    """Rows that make an item `person`'s to decide: their own, and the owner rows of the guardians
    they cover as a delegate."""
    owners = [person_key(g) for g in covering]
    return or_(
        col(ItemDecider.person) == person_key(person),
        and_(col(ItemDecider.person).in_(owners), col(ItemDecider.rule) == DecideRule.OWNER.value),
    )


def count(session: Session, person: str, *, covering: Iterable[str] = (), scenario: str | None = None) -> int:
    """How many pending items `person` may decide: a count over the same index ranges as `page`."""
    query = select(func.count(distinct(col(ItemDecider.item_id)))).where(
        ItemDecider.status == ItemStatus.PENDING.value, _theirs(person, covering)
    )
    if scenario is not None:
        query = query.where(ItemDecider.item_id == WorkItem.id, WorkItem.scenario_id == scenario)
    return session.exec(query).one()


def scenarios(session: Session, person: str, *, covering: Iterable[str] = ()) -> list[str]:
    """The scenarios of the pending items `person` may decide (for the inbox's filter): one
    DISTINCT over the person's index range and the covered owners', not a read of every item."""
    query = (
        select(WorkItem.scenario_id)
        .where(
            ItemDecider.item_id == WorkItem.id,
            ItemDecider.status == ItemStatus.PENDING.value,
            _theirs(person, covering),
        )
        .distinct()
        .order_by(WorkItem.scenario_id)
    )
    return list(session.exec(query).all())
