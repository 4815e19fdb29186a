"""The officials' console: a Korean web console served by anbu (server-rendered, no script
needed for the essential actions)."""
