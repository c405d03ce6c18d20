(q) => { if (!q) return ''; const link = ORIGIN + '?q=' + encodeURIComponent(q); COPY return link; }
