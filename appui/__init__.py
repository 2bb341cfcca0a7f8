"""Gradio pieces of the app's interface (the package ``transmrsr`` stays free of Gradio)."""
