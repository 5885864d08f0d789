"""crisiscomms: a crisis communications workflow engine.

The engine is importable without side effects: nothing here reads the environment, opens a
database or imports Prefect or Streamlit. See docs/architecture.md for the map.
"""

__version__ = "0.1.0"
