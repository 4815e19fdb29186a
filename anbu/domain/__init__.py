"""The pure core: no asyncio, SQLAlchemy, HTTP or Asterisk imports here.

Time comes in as an argument."""
