"""Chats: history records and store, the conversation engine, uploads, transcripts."""
