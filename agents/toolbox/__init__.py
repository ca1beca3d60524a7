"""dew's built-in tools, registered through the `dew.tools` entry-point group like anyone's."""
