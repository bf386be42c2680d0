"""The API's data shapes."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    value: str = Field(max_length=10_000)


class Item(ItemIn):
    id: int
    # Bumped by every write; the cache uses it to refuse older values (see cache.py).
    version: int


class OrderIn(BaseModel):
    item_id: int = Field(ge=1)
    quantity: int = Field(1, ge=1, le=1000)


class OrderAccepted(BaseModel):
    job_id: str
    status_url: str
