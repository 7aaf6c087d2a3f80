"""LangChain's `ChatOpenAI(use_responses_api=True)` against a running server's `/openai/v1/`, with the default `chat`
deployment: a plain answer, and a tool bound with `bind_tools` that the model calls."""

from __future__ import annotations

from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from conftest import Server


def chat_model(server: Server, max_tokens: int = 24) -> ChatOpenAI:
    return ChatOpenAI(model="chat", base_url=f"{server.url}/openai/v1/", api_key=server.key,
                      use_responses_api=True, temperature=0, max_tokens=max_tokens, max_retries=0)


def test_a_plain_invoke_answers(server: Server) -> None:
    answer = chat_model(server).invoke("What is the capital of France? Answer with one word.")
    assert isinstance(answer, AIMessage) and "Paris" in answer.text
    assert answer.id and answer.id.startswith("resp_") and answer.response_metadata["status"] == "completed"
    usage = answer.usage_metadata
    assert usage is not None and usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


@tool
def get_stock_price(ticker: str) -> str:
    """The latest price of a stock.

    Args:
        ticker: The stock's ticker symbol, e.g. AAPL.
    """
    return "431.20 USD"


def test_a_bound_tool_is_called(server: Server) -> None:
    model = chat_model(server, max_tokens=60).bind_tools([get_stock_price])
    answer = model.invoke("Look up the latest price of the MSFT stock.")
    assert isinstance(answer, AIMessage), answer
    assert [call["name"] for call in answer.tool_calls] == ["get_stock_price"], answer.content
    call = answer.tool_calls[0]
    assert call["args"] == {"ticker": "MSFT"} and call["id"]
    assert get_stock_price.invoke(call).content == "431.20 USD"
