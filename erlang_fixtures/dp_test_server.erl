%% dp_test_server: a registered gen_server that tests call across distribution.
%% It answers calls, records every message it receives (so a test can prove what
%% arrived and what did not), and can be asked to crash.
-module(dp_test_server).
-behaviour(gen_server).
-export([start/1, received/1, init/1, handle_call/3, handle_cast/2, handle_info/2]).

start(Name) ->
    gen_server:start({local, Name}, ?MODULE, Name, []).

%% What this server has received (calls, casts and plain messages), oldest first.
received(Name) ->
    gen_server:call(Name, '$dp_received').

init(Name) ->
    {ok, #{name => Name, log => []}}.

handle_call('$dp_received', _From, State = #{log := Log}) ->
    {reply, lists:reverse(Log), State};
handle_call({echo, Term}, _From, State) ->
    {reply, {echo, Term}, note({call, {echo, Term}}, State)};
handle_call({sleep, Ms}, _From, State) ->
    timer:sleep(Ms),
    {reply, slept, State};
handle_call({size, Term}, _From, State) ->
    %% Large messages: answer with the size only and keep nothing.
    {reply, {size, erlang:external_size(Term)}, State};
handle_call(whoami, _From, State) ->
    {reply, {self(), node()}, State};
handle_call(Request, _From, State) ->
    {reply, {ok, Request}, note({call, Request}, State)}.

handle_cast(crash, _State) ->
    exit(crashed);
handle_cast(Msg, State) ->
    {noreply, note({cast, Msg}, State)}.

handle_info(Msg, State) ->
    {noreply, note({info, Msg}, State)}.

note(Entry, State = #{log := Log}) when length(Log) < 10000 ->
    State#{log := [Entry | Log]};
note(_Entry, State) ->
    State.
