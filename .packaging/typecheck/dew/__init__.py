"""dew, as mypy sees it: the checkout's folders under the package name they are installed as."""
