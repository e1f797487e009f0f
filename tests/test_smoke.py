from aiocelery import App


async def test_round_trip(app: App) -> None:
    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    async with app.worker(concurrency=2):
        result = await add.delay(2, 3)
        assert await result.get(timeout=5) == 5
