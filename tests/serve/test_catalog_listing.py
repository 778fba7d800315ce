"""GET /v1/items (the catalog, paged by cursor) and ?fields= on recommendations (item fields inline)."""

from __future__ import annotations

from liverec.serve.schemas import ITEM_FIELDS
from support.api import Api, event


def put_items(api: Api, n: int) -> list[str]:
    ids = [f"m{i:03d}" for i in range(n)]
    items = [{"item_id": i, "title": f"Title {i}", "tags": ["t", i]} for i in ids]
    r = api.client.post("/v1/items", json={"items": items})
    assert r.status_code == 200, r.text
    return ids


def test_pages_walk_the_whole_catalog_once_in_creation_order(api: Api) -> None:
    ids = put_items(api, 23)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        params = {"limit": 10} | ({"after": after} if after else {})
        r = api.client.get("/v1/items", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        pages += 1
        assert len(page["items"]) <= 10
        seen += [i["item_id"] for i in page["items"]]
        assert all(i["title"] == f"Title {i['item_id']}" for i in page["items"])
        after = page["next"]
        if after is None:
            break
        assert after == seen[-1]  # the cursor is the last item id
    assert seen == ids and pages == 3


def test_a_page_that_ends_the_catalog_exactly_has_no_next(api: Api) -> None:
    ids = put_items(api, 10)
    page = api.client.get("/v1/items", params={"limit": 10}).json()
    assert [i["item_id"] for i in page["items"]] == ids and page["next"] is None
    assert api.client.get("/v1/items", params={"after": ids[-1]}).json() == {"items": [], "next": None}


def test_items_added_while_paging_appear_on_later_pages(api: Api) -> None:
    ids = put_items(api, 5)
    first = api.client.get("/v1/items", params={"limit": 3}).json()
    assert first["next"] == ids[2]
    api.client.put("/v1/items/late", json={"title": "Late"})
    rest = api.client.get("/v1/items", params={"limit": 10, "after": first["next"]}).json()
    assert [i["item_id"] for i in rest["items"]] == [*ids[3:], "late"]


def test_bad_limits_and_unknown_cursor_are_422(api: Api) -> None:
    put_items(api, 3)
    for params in ({"limit": 0}, {"limit": 501}, {"limit": "x"}, {"after": "nope"}):
        r = api.client.get("/v1/items", params=params)
        assert r.status_code == 422, (params, r.text)
    assert "cursor" in api.client.get("/v1/items", params={"after": "nope"}).text


def test_empty_catalog_lists_nothing(api: Api) -> None:
    assert api.client.get("/v1/items").json() == {"items": [], "next": None}


def test_fields_put_item_fields_inline_and_only_those(api: Api) -> None:
    put_items(api, 6)
    api.ok(event("u1", "m000"), event("u2", "m001"), event("u2", "m002"))
    plain = api.recs("new-user", k=5)
    assert plain["items"] and all(not set(i) & set(ITEM_FIELDS) for i in plain["items"])
    rich = api.recs("new-user", k=5, fields="title,tags")
    assert [i["item_id"] for i in rich["items"]] == [i["item_id"] for i in plain["items"]]
    for i in rich["items"]:
        assert i["title"] == f"Title {i['item_id']}" and i["tags"] == ["t", i["item_id"]]
        assert "text" not in i and "attributes" not in i and "available" not in i
    every = api.recs("new-user", k=2, fields="title,text,tags,attributes,created_at,available")
    assert set(every["items"][0]) >= {"title", "text", "tags", "attributes", "created_at", "available"}


def test_unknown_field_is_422_naming_the_allowed_ones(api: Api) -> None:
    put_items(api, 2)
    r = api.client.get("/v1/users/u1/recommendations", params={"fields": "title,price"})
    assert r.status_code == 422
    assert "price" in r.text and "title, text, tags" in r.text
