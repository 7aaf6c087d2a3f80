import { defineConfig, loadEnv } from "vite";

// The APIs the Studio calls, for `npm run dev` against a running Azurine (AZURINE_URL, else localhost:8080): the data
// plane, ARM, and the built-in issuer's token endpoint under its tenant id.
const API = "^/(openai|accounts|subscriptions|[0-9a-fA-F-]{36}/oauth2)/";

// The bundle is served by Azurine itself (src/azurine/studio/serving.py), under a CSP that allows no inline script.
export default defineConfig(({ mode }) => ({
  base: "/studio/",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  server: { proxy: { [API]: loadEnv(mode, ".", "AZURINE_").AZURINE_URL ?? "http://localhost:8080" } },
  build: {
    outDir: "../src/azurine/studio/dist",
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 300,
  },
}));
