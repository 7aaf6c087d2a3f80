"""OpenAI's Agents SDK (`openai-agents`) against a running server: an `Agent` with a function tool, run by
`Runner.run` through `OpenAIResponsesModel` on an `AsyncOpenAI` pointed at `/openai/v1/`, with the default `chat`
deployment (Qwen2.5-Coder-0.5B).

The full loop is two steps: the model calls the tool, then answers from what the tool returned. Given the tool's
output, this model writes the same call again (first-token probability 0.99), so the server decodes such a repeat
anew as prose (`engines/tool_repeats.py`), and the run ends with an answer taken from the tool's output."""

from __future__ import annotations

import asyncio
from typing import Any

from agents import (
    Agent,
    ModelSettings,
    OpenAIResponsesModel,
    Runner,
    RunResult,
    StopAtTools,
    function_tool,
    set_tracing_disabled,
)
from agents.items import ToolCallItem, ToolCallOutputItem
from openai import AsyncOpenAI

from conftest import Server

# a fact the model cannot know, so an answer that has it took it from the tool
WEATHER = "Drizzle, 11 C, wind 30 km/h from the south-east"
QUESTION = "What is the weather in Bergen right now?"


def run_agent(server: Server, asked: list[str], *, max_turns: int,
              tool_use_behavior: Any = "run_llm_again") -> RunResult:
    set_tracing_disabled(True)

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city.

        Args:
            city: The city's name, e.g. Paris.
        """
        asked.append(city)
        return WEATHER

    async def run() -> RunResult:
        client = AsyncOpenAI(base_url=f"{server.url}/openai/v1/", api_key=server.key, max_retries=0)
        agent = Agent(name="Forecaster", instructions="You answer questions about the weather. Use the tools.",
                      tools=[get_weather], model=OpenAIResponsesModel(model="chat", openai_client=client),
                      model_settings=ModelSettings(temperature=0, max_tokens=80),
                      tool_use_behavior=tool_use_behavior)
        try:
            return await Runner.run(agent, QUESTION, max_turns=max_turns)
        finally:
            await client.close()

    return asyncio.run(run())


def kinds(result: RunResult) -> list[type]:
    return [type(item) for item in result.new_items]


def test_an_agent_calls_its_function_tool_with_the_right_argument(server: Server) -> None:
    asked: list[str] = []
    result = run_agent(server, asked, max_turns=2, tool_use_behavior=StopAtTools(stop_at_tool_names=["get_weather"]))
    assert asked == ["Bergen"]
    assert kinds(result) == [ToolCallItem, ToolCallOutputItem]
    assert result.final_output == WEATHER  # the tool's own output ends the run
    assert result.raw_responses[0].response_id.startswith("resp_")


def test_an_agent_completes_the_tool_loop_and_answers_from_the_result(server: Server) -> None:
    asked: list[str] = []
    result = run_agent(server, asked, max_turns=4)
    assert asked == ["Bergen"]
    assert ToolCallItem in kinds(result) and ToolCallOutputItem in kinds(result)
    answer = result.final_output
    assert isinstance(answer, str) and ("11" in answer or "drizzle" in answer.lower()), answer
