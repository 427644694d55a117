import asyncio, threading, subprocess, time, multiprocessing

async def test_task():
    asyncio.create_task(asyncio.sleep(100))

def test_thread():
    threading.Thread(target=time.sleep, args=(100,), daemon=True, name="sleeper").start()

def test_child():
    subprocess.Popen(["sleep", "100"])

def test_zombie():
    p = subprocess.Popen(["true"]); time.sleep(0.3)

def test_mp():
    multiprocessing.get_context("spawn").Process(target=time.sleep, args=(100,)).start()

def test_clean():
    p = subprocess.Popen(["true"]); p.wait()
    t = threading.Thread(target=time.sleep, args=(0.5,)); t.start()

async def test_clean_async():
    t = asyncio.create_task(asyncio.sleep(100)); t.cancel()
    await asyncio.get_running_loop().run_in_executor(None, time.sleep, 0.1)
