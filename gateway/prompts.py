"""MCP prompts (Claude Code lists them as slash commands, ``/mcp__sessiond__<name>``):

- ``start``, ``checkpoint``, ``end``: ask the assistant to run that session tool and report
  what it says (a prompt only words a request; the tools do the work, with their permissions);
- ``recall <topic>``: searches memory now and hands the assistant what it found, to summarise;
- ``handoff``: the project's latest handoff, to say where the work stands and what is next.
"""

from __future__ import annotations

from typing import Annotated

from fastmcp import Context, FastMCP
from pydantic import Field

from gateway import handoff
from gateway.described import prompt
from gateway.project_dir import detect

RECALL_RESULTS = 10
MAX_TOPIC_CHARS = 500
MAX_NOTE_CHARS = 2000
MAX_MEMORY_CHARS = 1500

Directory = Annotated[str | None, Field(max_length=4096, description=(
    "The project's directory; omitted: this window's project."))]


def register(mcp: FastMCP, gw) -> None:
    @prompt(mcp, name="start")
    def start_prompt(working_directory: Directory = None) -> str:
        """Start a sessiond working session on this project and summarise where it stands."""
        where = f" with working_directory={working_directory!r}" if working_directory else ""
        return (f"Call sessiond's `start` tool{where}. Then tell me, briefly: the quality "
                "score and what loses the most points, the last session's handoff summary and "
                "its open recommendations, and the memories it lists that matter for what "
                "comes next. Do not start on any of it until I say so.")

    @prompt(mcp, name="checkpoint")
    def checkpoint_prompt(note: Annotated[str, Field(max_length=MAX_NOTE_CHARS, description=(
            "What this checkpoint is about."))] = "") -> str:
        """Checkpoint the session: quality score, a checkpoint memory and a commit."""
        about = f" with message={note!r}" if note.strip() else (
            " with a one-line message saying what was done since the last checkpoint")
        return (f"Call sessiond's `checkpoint` tool{about}. Report the score and its change, "
                "whether a commit was made (and why not, if not), and any reflection stored.")

    @prompt(mcp, name="end")
    def end_prompt() -> str:
        """End the session and write its handoff for the next one."""
        return ("Before ending, store with sessiond's `store_reflection` tool the decisions and "
                "lessons of this session that the next one should know (skip what the code "
                "or the commit messages already say). Then call sessiond's `end` tool and "
                "give me its summary, the final score and the path of the handoff file.")

    @prompt(mcp, name="recall")
    async def recall_prompt(topic: Annotated[str, Field(min_length=1, max_length=MAX_TOPIC_CHARS,
                                                        description="What to recall.")]) -> str:
        """Search memory for a topic and summarise what it holds."""
        hits, note = await gw.search(topic.strip(), limit=RECALL_RESULTS, min_score=0.05)
        if not hits.hits:
            return (f"sessiond's memory holds nothing on {topic!r}{f' ({note})' if note else ''}."
                    " Say so, and ask me whether to search with other words.")
        lines = [(f"sessiond's memory on {topic!r}: the {len(hits.hits)} best matches, best "
                  "first (id, kind, project, date, relevance):"), ""]
        for h in hits.hits:
            m = h.memory
            text = m.content if len(m.content) <= MAX_MEMORY_CHARS else (
                m.content[:MAX_MEMORY_CHARS] + " [...]")
            lines += [(f"--- {m.id} | {m.kind} | {m.project} | {m.created_at[:16]} | "
                       f"{h.score:.2f}"), text, ""]
        if note:
            lines.append(f"(Note: {note}.)")
        lines.append("Summarise what these say about the topic: the decisions and facts, "
                     "newest first where they disagree (say which one replaced which), and "
                     "what is still open. Cite memory ids. Leave out matches that are not "
                     "about the topic, and say so if none are.")
        return "\n".join(lines)

    @prompt(mcp, name="handoff")
    async def handoff_prompt(ctx: Context, working_directory: Directory = None) -> str:
        """The project's latest handoff: where the work stands and what is next."""
        cur = gw.sessions.current
        if working_directory is None and cur is not None:
            root, name = cur.root, cur.project
        else:
            where = await detect(gw.cfg, ctx, working_directory)
            root, name = where.root, where.name
        latest = handoff.latest(gw.cfg, str(root), name)
        if latest is None:
            return (f"sessiond has no handoff for {name} ({root}): no session on it was ended "
                    "with the `end` tool yet. Say so.")
        cut = " (cut short)" if latest.truncated else ""
        return (f"The latest handoff of {name} ({latest.path}){cut}:\n\n{latest.content}\n\n"
                "From it, tell me where the work stands and what to do next, most important "
                "first.")
