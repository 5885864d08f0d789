"""The test kit: drills, synthetic audiences, provider emulators and throwaway PostgreSQL.

Only the faces (the drill and demo commands) and the tests import it; the domain never does.
"""
