"""Posts: the blog of the 003 notes, as pages and as a JSON API, with profile pictures."""
