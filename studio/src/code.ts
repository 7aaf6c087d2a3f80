// "View code": the playground's request as the openai SDK for Python writes it. Secrets come from environment
// variables; the signed-in key or secret is never printed.

import { API_VERSION, type ChatRequest } from "./api/data";
import type { Session } from "./session";

/** A Python literal for a JSON value (JSON's string escapes are Python's too). */
function py(value: unknown): string {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number" || typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(py).join(", ")}]`;
  return `{${Object.entries(value as Record<string, unknown>).map(([k, v]) => `${py(k)}: ${py(v)}`).join(", ")}}`;
}

export function pythonChat(session: Session, endpoint: string, deployment: string, body: ChatRequest): string {
  const origin = window.location.origin;
  const url = `${origin}${endpoint}`;
  const lines: string[] = ["import os", ""];
  if (session.kind === "principal") {
    lines.push(
      "from azure.identity import ClientSecretCredential, get_bearer_token_provider",
      "from openai import AzureOpenAI",
      "",
      "credential = ClientSecretCredential(",
      `    ${py(session.tenant)},`,
      `    ${py(session.clientId)},`,
      '    os.environ["AZURE_CLIENT_SECRET"],',
      `    authority=${py(origin)},`,
      "    disable_instance_discovery=True,",
      ")",
      "client = AzureOpenAI(",
      `    azure_endpoint=${py(url)},`,
      '    azure_ad_token_provider=get_bearer_token_provider(credential, "https://cognitiveservices.azure.com/.default"),',
      `    api_version=${py(API_VERSION)},`,
      ")",
    );
  } else {
    lines.push(
      "from openai import AzureOpenAI",
      "",
      "client = AzureOpenAI(",
      `    azure_endpoint=${py(url)},`,
      '    api_key=os.environ["AZURE_OPENAI_API_KEY"],',
      `    api_version=${py(API_VERSION)},`,
      ")",
    );
  }
  lines.push(
    "stream = client.chat.completions.create(",
    `    model=${py(deployment)},  # the deployment's name`,
    "    messages=[",
    ...body.messages.map((m) => `        ${py({ role: m.role, content: m.content })},`),
    "    ],",
    `    temperature=${py(body.temperature)},`,
    `    max_tokens=${py(body.max_tokens)},`,
    `    top_p=${py(body.top_p)},`,
    "    stream=True,",
    ")",
    "for chunk in stream:",
    "    if chunk.choices and chunk.choices[0].delta.content:",
    '        print(chunk.choices[0].delta.content, end="", flush=True)',
    "print()",
  );
  return lines.join("\n") + "\n";
}
