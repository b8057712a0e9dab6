"""Ray Serve application: OpenAI-compatible model server + sandboxed evaluator (see phiray.serve.app)."""
