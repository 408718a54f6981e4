"""Reports, step 4: sections as document blocks, rendered to Markdown, HTML and the trial viewer."""
