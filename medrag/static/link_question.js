() => (new URLSearchParams(location.search).get('q') || '').trim()
