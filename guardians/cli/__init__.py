"""The `dew` command line: the guardians' desk in a terminal."""
