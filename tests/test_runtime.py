def test_ray_session_is_local_and_loopback(ray_session):
    ray = ray_session
    assert ray.cluster_resources()["CPU"] == 2
    assert all(node["NodeManagerAddress"] == "127.0.0.1" for node in ray.nodes())

    @ray.remote
    def square(x):
        return x * x

    assert ray.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
