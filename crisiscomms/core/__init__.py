"""Infrastructure every package may use: settings (the only reader of the environment),
the database and its migrations, errors, the clock, atomic files and locks, locales.
"""
