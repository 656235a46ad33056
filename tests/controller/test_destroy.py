"""`hive destroy NAME [--purge]`: only for an agent applied main no longer has; the purge
deletes what destroy keeps (notes, history, credentials)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.protocol import ProtocolError
from tests.controller.test_broker import with_agents
from tests.helpers import Clone, admin, hive_settings, running_hive, wait_for

pytestmark = pytest.mark.anyio


async def test_destroy_purges_a_removed_agents_dirs_and_refuses_an_applied_one(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        await with_agents(hive, short_dir, "alice")
        notes = hive.layout.notes_dir("alice")
        await wait_for(notes.exists)
        (notes / "memory.md").write_text("kept until purged\n")
        async with admin(hive) as client:
            with pytest.raises(ProtocolError) as refused:
                await client.call("destroy", name="alice", purge=True)
            assert refused.value.code == "conflict"
            assert "through an approval" in refused.value.message
            assert (notes / "memory.md").exists()

            clone = Clone(short_dir / "again", hive.git.proposed_path)
            clone.remove("agents/alice")
            sha = clone.commit_push("alice goes")

            async def pending() -> object:
                rows = await hive.approvals.query("pending")
                return next((a for a in rows if a.sha == sha), None)

            approval = await wait_for(pending)
            await hive.approvals.approve(approval.id)
            await wait_for(lambda: not (hive.layout.agent_dir("alice") / "build.json").exists())
            assert (notes / "memory.md").exists()  # removal keeps the notes

            done = await client.call("destroy", name="alice", purge=True)
            assert isinstance(done, dict) and done["purged"] is True
            assert not hive.layout.agent_dir("alice").exists()
            again = await client.call("destroy", name="alice")
            assert isinstance(again, dict) and again["purged"] is False
