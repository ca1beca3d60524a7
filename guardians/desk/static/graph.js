// Draws the scenario graphs on a page with mermaid (vendored, see vendor/mermaid/README).
// securityLevel 'strict': labels are text, never HTML, and clicks run nothing.
mermaid.initialize({ startOnLoad: true, securityLevel: "strict", theme: "neutral" });
