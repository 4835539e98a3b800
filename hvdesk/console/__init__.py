"""The VM console without Qt: an asyncio RFB client, the framebuffer as bytes, key tables."""
